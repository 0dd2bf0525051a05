import numpy as np
import pytest
import torch
from joblib import Memory
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

from advprune import AdversarialPruner, ImportanceExtrapolator
from advprune.extrapolation import confidence_scores
from advprune.training import AdversarialTrainer


def blobs(n_per_class=(60, 30, 10), seed=0):
    """Three imbalanced, well separated classes of 6 features in [0, 1]."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.2] * 6, [0.8] * 6, [0.2, 0.8] * 3])
    X = np.concatenate(
        [
            c + 0.05 * rng.standard_normal((n, 6))
            for c, n in zip(centres, n_per_class, strict=True)
        ]
    )
    y = np.repeat(np.arange(3), n_per_class)
    return np.clip(X, 0, 1).astype(np.float32), y


FAST = dict(
    subset_size=0.5,
    epochs=3,
    eps=0.05,
    attack_steps=2,
    importance="mean_loss",
    extrapolation="knn",
    batch_size=32,
    embedding="raw",
    device="cpu",
)


def pruner(**kwargs):
    return AdversarialPruner(**{**FAST, "random_state": 0, **kwargs})


def test_fit_transform_support_and_resample_agree():
    X, y = blobs()
    p = pruner(prune_ratio=0.3, subset_size=0.5)
    X_kept = p.fit_transform(X, y)
    mask = p.get_support()
    idx = p.get_support(indices=True)
    X_res, y_res = pruner(prune_ratio=0.3, subset_size=0.5).fit_resample(X, y)
    assert mask.dtype == bool and mask.shape == (100,)
    np.testing.assert_array_equal(np.flatnonzero(mask), idx)
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(X_kept, X[idx])
    np.testing.assert_array_equal(X_res, X[idx])
    np.testing.assert_array_equal(y_res, y[idx])
    np.testing.assert_array_equal(p.support_, mask)


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.73])
@pytest.mark.parametrize("selection", ["lowest", "stratified"])
def test_exact_kept_counts(ratio, selection):
    X, y = blobs()
    p = pruner(prune_ratio=ratio, subset_size=0.5, selection=selection).fit(X, y)
    assert p.support_.sum() == 100 - int(np.floor(ratio * 100))


@pytest.mark.parametrize("selection", ["lowest", "stratified"])
def test_class_balanced_counts_per_class_on_imbalanced_labels(selection):
    X, y = blobs()
    p = pruner(
        prune_ratio=0.5, subset_size=0.5, class_balanced=True, selection=selection
    ).fit(X, y)
    for c, n_c in zip(range(3), (60, 30, 10), strict=True):
        assert p.support_[y == c].sum() == n_c - int(np.floor(0.5 * n_c))


def test_scores_direct_where_scored_and_extrapolated_elsewhere():
    X, y = blobs()
    p = pruner(subset_size=40).fit(X, y)
    assert p.scored_mask_.sum() == 40
    np.testing.assert_array_equal(np.flatnonzero(p.scored_mask_), p.subset_indices_)
    assert np.isfinite(p.scores_).all()
    # The subset is stratified by class.
    assert np.bincount(y[p.subset_indices_]).tolist() == [24, 12, 4]
    # Unscored scores are the extrapolator's predictions on their embedding.
    unscored = ~p.scored_mask_
    np.testing.assert_allclose(
        p.scores_[unscored], p.extrapolator_.predict(X[unscored]), rtol=1e-6
    )
    np.testing.assert_allclose(
        p.score_samples(X[unscored]), p.scores_[unscored], rtol=1e-6
    )
    E = p.embed(X)
    assert E.shape == (100, 6) and E.dtype == np.float32
    np.testing.assert_allclose(
        p.extrapolator_.predict(E[unscored]), p.scores_[unscored], rtol=1e-6
    )
    out = np.zeros((100, 6), np.float32)
    assert p.embed(X, out=out) is out
    assert set(p.timings_) == {"scoring", "tracking", "embedding", "extrapolation"}


def test_sort_direction_planted_samples():
    """A mislabelled sample (high loss, important) is kept; the easiest
    sample, deep inside its class, is pruned."""
    X, y = blobs()
    y = y.copy()
    y[3] = 1  # mislabelled: sits in class 0's cluster
    X = X.copy()
    X[7] = 0.0  # the far corner of class 0, easiest of all
    p = pruner(prune_ratio=0.5, subset_size=1.0, epochs=40, lr=0.1).fit(X, y)
    assert p.support_[3]
    assert not p.support_[7]
    assert p.scores_[3] == p.scores_.max()


def test_reproducible_with_random_state():
    X, y = blobs()
    a = pruner(subset_size=0.4).fit(X, y)
    b = pruner(subset_size=0.4).fit(X, y)
    np.testing.assert_array_equal(a.scores_, b.scores_)
    np.testing.assert_array_equal(a.support_, b.support_)
    c = pruner(subset_size=0.4, random_state=1).fit(X, y)
    assert not np.array_equal(a.scores_, c.scores_)


def test_default_model_embedding_and_dynamic_uncertainty():
    X, y = blobs()
    p = AdversarialPruner(
        prune_ratio=0.5,
        subset_size=0.5,
        extrapolation="knn",
        epochs=11,
        eps=0.05,
        attack_steps=2,
        device="cpu",
        random_state=0,
    ).fit(X, y)
    assert p.dynamics_.adversarial.shape == (11, 50)
    assert p.support_.sum() == 50
    assert p.model_.training is False


def test_default_confidence_strategy_tracks_the_pool_and_costs_little():
    X, y = blobs()
    p = AdversarialPruner(
        prune_ratio=0.5, subset_size=0.2, eps=0.05, attack_steps=2, device="cpu",
        random_state=0,
    ).fit(X, y)  # fmt: skip
    # No recording of the subset; the pool tracked every 4th epoch and attacked
    # once after the last.
    assert p.dynamics_ is None and p.extrapolator_ is None
    assert p.tracking_.epochs.tolist() == [3, 7, 11, 15, 19]
    assert p.tracking_.clean.shape == (5, 100)
    assert p.tracking_.adversarial.shape == (100,)
    assert np.isfinite(p.tracking_.clean).all()
    # Scores are percentiles; the 20-sample subset ran at batch 8 (min_steps).
    assert p.scores_.min() >= 0 and p.scores_.max() <= 1
    assert p.support_.sum() == 50
    assert p.cost_["scoring"] == 20 * 20 * 3 * (1 + 1)  # PGD-1, no recording
    assert p.cost_["tracking"] == 100 * 5 + 100 * (3 * 2 + 1)
    assert p.cost_["direct"] == 100 * 20 * (3 * 3 + 3 * 2 + 2)
    assert p.cost_["fraction_of_direct"] == pytest.approx(
        (p.cost_["scoring"] + p.cost_["tracking"]) / p.cost_["direct"]
    )
    assert set(p.timings_) == {"scoring", "tracking", "embedding", "extrapolation"}
    assert not hasattr(p, "score_samples")
    # What was fitted decides, not a parameter set afterwards.
    assert not hasattr(p.set_params(extrapolation="knn"), "score_samples")


def test_bfloat16_amp_scores_as_float32_does_on_cpu():
    X, y = blobs()
    params = dict(subset_size=0.2, eps=0.05, attack_steps=2, device="cpu")
    full = AdversarialPruner(**params, random_state=0).fit(X, y)
    half = AdversarialPruner(**params, amp="bfloat16", random_state=0).fit(X, y)
    assert np.isfinite(half.tracking_.clean).all()
    assert half.scores_.min() >= 0 and half.scores_.max() <= 1
    # The tracked probabilities moved (bfloat16 was applied), and on three well
    # separated blobs the pool is ranked as float32 ranks it.
    assert not np.array_equal(full.tracking_.clean, half.tracking_.clean)
    assert np.corrcoef(full.scores_, half.scores_)[0, 1] > 0.95


@pytest.mark.parametrize("strategy", ["held_out", "class_knn", "learned"])
def test_every_strategy_scores_every_sample(strategy):
    X, y = blobs()
    p = pruner(
        extrapolation=strategy, importance="dynamic_uncertainty", epochs=11,
        importance_params={"window": 5}, subset_size=0.4,
    ).fit(X, y)  # fmt: skip
    assert np.isfinite(p.scores_).all() and p.scores_.shape == (100,)
    np.testing.assert_array_equal(
        p.scores_[p.scored_mask_],
        p.scores_[p.subset_indices_],
    )
    # Direct scores where scored: the importance of the recorded dynamics.
    from advprune.scores import compute_score

    direct = compute_score(
        "dynamic_uncertainty", p.dynamics_, y[p.subset_indices_], window=5
    )
    np.testing.assert_array_equal(p.scores_[p.subset_indices_], direct)
    if strategy == "held_out":
        # Unscored samples take values of the scored samples' distribution.
        rest = p.scores_[~p.scored_mask_]
        assert rest.min() >= direct.min() and rest.max() <= direct.max()


def test_strategies_refuse_importances_they_cannot_estimate(no_training):
    X, y = blobs()
    with pytest.raises(ValueError, match="estimates dynamic uncertainty"):
        pruner(extrapolation="confidence", importance="mean_loss").fit(X, y)
    with pytest.raises(ValueError, match="class probabilities"):
        pruner(extrapolation="held_out", importance="el2n").fit(X, y)
    # The confidence strategy's parameters are confidence_scores' own.
    with pytest.raises(TypeError, match="'confidence'.*unexpected keyword.*window"):
        pruner(
            extrapolation="confidence",
            importance="dynamic_uncertainty",
            importance_params={"window": 5},
        ).fit(X, y)
    with pytest.raises(ValueError, match="'confidence'.*class_weight must be in"):
        pruner(
            extrapolation="confidence",
            importance="dynamic_uncertainty",
            importance_params={"class_weight": 2.0},
        ).fit(X, y)


def _default_and_refit(**importance_params):
    """The default pruner and one with ``importance_params``, fitted alike on
    the blobs, and the scores confidence_scores gives with those parameters
    from the default's tracking."""
    X, y = blobs()
    params = dict(subset_size=0.2, eps=0.05, attack_steps=2, device="cpu")
    default = AdversarialPruner(**params, random_state=0).fit(X, y)
    refit = AdversarialPruner(
        **params, importance_params=importance_params, random_state=0
    ).fit(X, y)
    expected = confidence_scores(
        default.tracking_.adversarial,
        default.tracking_.clean,
        default.subset_indices_,
        y=y,
        **importance_params,
    )
    return default, refit, expected


def test_confidence_strategy_takes_confidence_scores_parameters():
    default, within, expected = _default_and_refit(class_weight=1.0)
    np.testing.assert_allclose(within.scores_, expected)
    assert not np.allclose(within.scores_, default.scores_)


@pytest.mark.parametrize("n", [*range(1, 70), 100, 129, 136, 151, 241, 257, 1000, 5000])
def test_min_steps_batch_takes_the_steps_and_is_never_below_8(n):
    from advprune.scoring import _batch_size_for_steps
    from advprune.training._batches import batch_slices

    batch = _batch_size_for_steps(n, 128, 320, 20)
    assert min(8, n) <= batch <= 128
    # The trainer's own batches (a last one of a single sample joins the one
    # before) reach the floor wherever a batch of 8 or more can.
    if batch > min(8, n):
        assert 20 * len(batch_slices(n, batch)) >= 320


def test_min_steps_cuts_the_batch_and_train_attack_steps_the_attack(monkeypatch):
    X, y = blobs()
    seen = []
    fit = AdversarialTrainer.fit

    def spying_fit(self, *args, **kwargs):
        seen.append((self.batch_size, self.attack_steps, self.epochs))
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(AdversarialTrainer, "fit", spying_fit)
    pruner(subset_size=50, min_steps=60, train_attack_steps=1, epochs=3).fit(X, y)
    pruner(subset_size=50, min_steps=None, train_attack_steps=None, epochs=3).fit(X, y)
    # 60 steps in 3 epochs: 20 steps of at most 3 rows of 50 would be needed;
    # the batch stops at 8 samples.
    assert seen == [(8, 1, 3), (32, 2, 3)]


@pytest.mark.parametrize(
    "embedding",
    [
        PCA(n_components=3),
        lambda X: np.asarray(X)[:, :2] * 2,
        torch.nn.Linear(6, 4),
    ],
    ids=["transformer", "callable", "module"],
)
def test_embedding_options(embedding):
    X, y = blobs()
    p = pruner(subset_size=0.5, embedding=embedding).fit(X, y)
    assert np.isfinite(p.scores_).all()
    assert p.score_samples(X[:5]).shape == (5,)
    assert p.set_params(extrapolation="held_out").score_samples(X[:5]).shape == (5,)


def test_any_regressor_extrapolates():
    X, y = blobs()
    p = pruner(subset_size=0.5, extrapolator=KNeighborsRegressor(3)).fit(X, y)
    assert isinstance(p.extrapolator_, KNeighborsRegressor)


def test_memmap_input_is_read_and_left_untouched(tmp_path):
    X, y = blobs()
    np.save(tmp_path / "X.npy", X)
    X_map = np.load(tmp_path / "X.npy", mmap_mode="r")
    X_kept = pruner(subset_size=0.5, chunk_size=16).fit_transform(X_map, y)
    expected = pruner(subset_size=0.5).fit_transform(X, y)
    np.testing.assert_array_equal(X_kept, expected)
    np.testing.assert_array_equal(np.load(tmp_path / "X.npy"), X)


def test_memory_caches_the_scoring_run(tmp_path, monkeypatch):
    X, y = blobs()
    calls = []
    fit = AdversarialTrainer.fit

    def counting_fit(self, *args, **kwargs):
        calls.append(1)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(AdversarialTrainer, "fit", counting_fit)
    memory = Memory(tmp_path, verbose=0)
    supports = []
    for ratio in (0.2, 0.5, 0.8):
        p = pruner(prune_ratio=ratio, subset_size=0.5, memory=memory).fit(X, y)
        supports.append(p.support_)
    assert len(calls) == 1
    assert supports[0].sum() > supports[1].sum() > supports[2].sum()
    pruner(subset_size=0.5, memory=str(tmp_path), epochs=4).fit(X, y)
    assert len(calls) == 2
    # joblib cannot hash a lambda; the cache keys augment by name, as a
    # checkpoint does, so a lambda rebuilt alike is the same run.
    for _ in range(2):
        augment = lambda x, generator: x  # noqa: E731
        pruner(subset_size=0.5, memory=memory, augment=augment).fit(X, y)
    assert len(calls) == 3


def test_memory_caches_a_tracked_run_and_times_only_this_fit(tmp_path):
    X, y = blobs()
    params = dict(
        importance="dynamic_uncertainty",
        extrapolation="confidence",
        epochs=11,
        min_steps=11,
        memory=str(tmp_path),
    )
    first = pruner(**params).fit(X, y)
    again = pruner(**params).fit(X, y)
    np.testing.assert_array_equal(again.scores_, first.scores_)
    assert first.timings_["tracking"] > 0
    assert again.timings_["tracking"] == 0.0
    assert all(seconds >= 0 for seconds in again.timings_.values())


def _no_training(*args, **kwargs):
    raise AssertionError("training started")


@pytest.fixture
def no_training(monkeypatch):
    monkeypatch.setattr(AdversarialTrainer, "fit", _no_training)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"prune_ratio": 1.0}, "prune_ratio"),
        ({"prune_ratio": -0.1}, "prune_ratio"),
        ({"subset_size": 0}, "subset_size"),
        ({"subset_size": 0.0}, "subset_size"),
        ({"subset_size": 1000}, "subset_size"),
        ({"importance": "entropy"}, "importance"),
        ({"selection": "highest"}, "selection"),
        ({"importance": "dynamic_uncertainty", "epochs": 10}, "window"),
        ({"importance": "tdds", "epochs": 5}, "tdds"),
        ({"signal": "clean", "record": "online"}, "signal"),
        ({"importance": lambda P: P[0, :2]}, "score must return"),
        ({"embedding": "modle"}, "embedding"),
        ({"extrapolator": ImportanceExtrapolator(weights="nearest")}, "weights"),
        ({"bounds": (1.0, 0.0)}, "bounds"),
        ({"bounds": (0.0, float("inf"))}, "bounds"),
        ({"device": "cuda:7"}, "device"),
        ({"n_jobs": 0}, "n_jobs"),
        ({"lr": 0.0}, "lr"),
        ({"model": torch.nn.Linear(6, 2)}, "logits of shape"),
        ({"model": torch.nn.Linear(5, 3)}, "cannot take samples"),
        ({"model": "wide-resnet"}, "model"),
    ],
)
def test_bad_parameters_raise_before_training(params, match, no_training):
    X, y = blobs()
    with pytest.raises(ValueError, match=match):
        pruner(**params).fit(X, y)


@pytest.mark.parametrize(
    ("X", "y", "error", "match"),
    [
        (np.zeros(10), np.zeros(10, int), ValueError, "X must have shape"),
        (np.zeros((10, 2)), np.zeros(9, int), ValueError, "y must be 1-D"),
        (np.zeros((10, 2)), np.array([0.5, 1.5] * 5), ValueError, "Unknown label"),
        (np.zeros((10, 2)), np.zeros(10, int), ValueError, "two classes"),
        (np.full((10, 2), np.nan), np.arange(10) % 2, ValueError, "NaN"),
    ],
)
def test_bad_data_raises(X, y, error, match):
    with pytest.raises(error, match=match):
        pruner(subset_size=1.0).fit(X, y)


def test_bad_embedding_output_and_uncovered_classes_raise(no_training):
    X, y = blobs()
    y_rare = np.zeros(100, int)
    y_rare[50] = 1
    with pytest.raises(ValueError, match=r"classes \[1\]"):
        pruner(
            subset_size=2, class_balanced=True, extrapolator=KNeighborsRegressor(1)
        ).fit(X, y_rare)


def test_bad_embedding_output_names_the_embedding():
    X, y = blobs()
    with pytest.raises(ValueError, match="one row per sample"):
        pruner(subset_size=0.5, embedding=lambda X: np.zeros((3, 2))).fit(X, y)


def test_fewer_scored_samples_than_neighbours_degrades_with_a_warning():
    X, y = blobs()
    with pytest.warns(UserWarning, match="fewer than n_neighbors=12"):
        p = pruner(subset_size=11).fit(X, y)
    assert p.extrapolator_.n_neighbors == 11
    assert np.isfinite(p.scores_).all()


def test_out_of_bounds_pixels_fail_fast_and_name_bounds(no_training):
    X, y = blobs()
    with pytest.raises(ValueError, match=r"outside bounds=\(0.0, 1.0\)"):
        pruner().fit(X * 255, y)
    # bounds=None trains unbounded features as they are.
    with pytest.raises(AssertionError, match="training started"):
        pruner(bounds=None).fit(X * 255 - 7, y)


def test_channels_last_images_are_refused(no_training):
    X = np.random.default_rng(0).random((20, 8, 8, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="channels-last"):
        pruner().fit(X, np.arange(20) % 2)


@pytest.mark.parametrize(
    "params",
    [
        {"embedding": "modle"},
        {"extrapolator": ImportanceExtrapolator(n_neighbors=0)},
        {"bounds": (1.0, 0.0)},
        {"model": torch.nn.Linear(6, 2)},
        {"device": "cuda"},
        {},  # 0-255 pixels
    ],
)
def test_mistakes_fail_within_two_seconds(params):
    import time

    from advprune.datasets import load_digits_pool

    data = load_digits_pool(2000, random_state=0)
    X = data.X_pool * (255 if not params else 1)
    if "device" in params and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    started = time.perf_counter()
    with pytest.raises(ValueError):
        AdversarialPruner(eps=0.2, attack_steps=5, random_state=0, **params).fit(
            X, data.y_pool
        )
    assert time.perf_counter() - started < 2.0


def test_string_labels_column_y_and_dataframes():
    pd = pytest.importorskip("pandas")
    X, y = blobs()
    names = np.array(["ant", "bee", "cat"])[y]
    p = pruner(prune_ratio=0.5)
    _, y_kept = p.fit_resample(X, names)
    assert p.classes_.tolist() == ["ant", "bee", "cat"]
    np.testing.assert_array_equal(y_kept, names[p.sample_indices_])
    reference = pruner(prune_ratio=0.5).fit(X, y)
    np.testing.assert_array_equal(p.scores_, reference.scores_)

    with pytest.warns(Warning, match="column-vector y"):
        column = pruner(prune_ratio=0.5).fit(X, y[:, None])
    np.testing.assert_array_equal(column.support_, reference.support_)

    frame = pd.DataFrame(
        X, columns=[f"f{i}" for i in range(6)], index=100 + np.arange(100)
    )
    series = pd.Series(names, index=frame.index)
    p = pruner(prune_ratio=0.5)
    frame_kept, series_kept = p.fit_resample(frame, series)
    assert isinstance(frame_kept, pd.DataFrame) and isinstance(series_kept, pd.Series)
    np.testing.assert_array_equal(frame_kept.index, 100 + p.sample_indices_)
    np.testing.assert_array_equal(series_kept.index, frame_kept.index)
    assert p.feature_names_in_.tolist() == list(frame.columns)
    np.testing.assert_array_equal(p.support_, reference.support_)
    assert isinstance(pruner(prune_ratio=0.5).fit_transform(frame, y), pd.DataFrame)


def test_n_features_in_counts_flattened_features_like_the_classifier():
    from advprune import AdversarialClassifier

    X = np.random.default_rng(0).random((40, 1, 4, 4)).astype(np.float32)
    y = np.arange(40) % 2
    p = pruner(subset_size=0.5, importance_params=None).fit(X, y)
    clf = AdversarialClassifier(epochs=1, device="cpu", random_state=0).fit(X, y)
    assert p.n_features_in_ == clf.n_features_in_ == 16


def test_sample_indices_match_get_support():
    X, y = blobs()
    p = pruner(prune_ratio=0.3).fit(X, y)
    np.testing.assert_array_equal(p.sample_indices_, p.get_support(indices=True))


def test_score_samples_checks_its_input():
    X, y = blobs()
    p = pruner(subset_size=0.5).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        p.score_samples(np.zeros((3, 5), np.float32))


def test_caller_arrays_unmodified():
    X, y = blobs()
    X.setflags(write=False)
    y.setflags(write=False)
    X_copy, y_copy = X.copy(), y.copy()
    pruner(subset_size=0.5).fit(X, y)
    np.testing.assert_array_equal(X, X_copy)
    np.testing.assert_array_equal(y, y_copy)


@parametrize_with_checks(
    [
        # Half of the rows scored, the rest extrapolated: the checks' small
        # data sets give fewer scored samples than the default 12 neighbours,
        # which the pruner handles with a warning. The checks' data are
        # unbounded features.
        AdversarialPruner(**{**FAST, "subset_size": 0.5, "epochs": 2}, bounds=None),
        AdversarialPruner(**{**FAST, "subset_size": 1.0, "epochs": 2}, bounds=None),
        # The default strategy (confidence, dynamic uncertainty), on a budget.
        AdversarialPruner(
            subset_size=0.5,
            epochs=11,
            attack_steps=1,
            min_steps=11,
            embedding="raw",
            device="cpu",
            bounds=None,
        ),
    ],
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_image_array_pool_is_not_rescanned_for_nan(monkeypatch, no_training):
    # uint8 images cannot hold NaN or infinity: the checks before training must
    # not read (and convert to float) a whole ImageArray pool, only its head.
    from advprune.datasets import ImageArray

    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 1), np.uint8)
    X = ImageArray(images)
    read = []
    getitem = ImageArray.__getitem__

    def counting_read(self, key):
        out = getitem(self, key)
        read.append(len(out))
        return out

    monkeypatch.setattr(ImageArray, "__getitem__", counting_read)
    pruner(subset_size=0.5)._check_inputs(X, np.arange(40) % 2)
    assert sum(read) <= 2


def test_clean_weight_one_skips_the_attack_on_the_pool():
    default, clean, expected = _default_and_refit(clean_weight=1.0)
    # Same run, same clean series; no attack pass, and its cost is not counted.
    assert clean.tracking_.adversarial is None
    np.testing.assert_array_equal(clean.tracking_.clean, default.tracking_.clean)
    np.testing.assert_allclose(clean.scores_, expected)
    assert clean.cost_["tracking"] == 100 * 5
    assert default.cost_["tracking"] == 100 * 5 + 100 * (3 * 2 + 1)


def test_confidence_scores_needs_the_attack_below_clean_weight_one():
    clean = np.array([[0.5, 0.9, 0.7, 0.4]])
    params = dict(clean_weight=1.0, class_weight=0.0)
    scores = confidence_scores(None, clean, [0, 1], **params)
    ignored = confidence_scores(np.zeros(4), clean, [0, 1], **params)
    assert scores.tolist() == ignored.tolist()
    with pytest.raises(ValueError, match="adversarial is required when clean_weight"):
        confidence_scores(None, clean, [0, 1], class_weight=0.0)
    with pytest.raises(ValueError, match=r"adversarial must have shape \(4,\)"):
        confidence_scores(np.zeros(3), clean, [0, 1], class_weight=0.0)
