import numpy as np
import pytest
import torch
from joblib import Memory
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

import advprune.pruning
from advprune import AdversarialPruner, ImportanceExtrapolator
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
    score="mean_loss",
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
    assert set(p.timings_) == {"scoring", "embedding", "extrapolation"}


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
        epochs=11,
        eps=0.05,
        attack_steps=2,
        device="cpu",
        random_state=0,
    ).fit(X, y)
    assert p.dynamics_.adversarial.shape == (11, 50)
    assert p.support_.sum() == 50
    assert p.model_.training is False


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


def _no_training(*args, **kwargs):
    raise AssertionError("training started")


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"prune_ratio": 1.0}, "prune_ratio"),
        ({"prune_ratio": -0.1}, "prune_ratio"),
        ({"subset_size": 0}, "subset_size"),
        ({"subset_size": 0.0}, "subset_size"),
        ({"subset_size": 1000}, "subset_size"),
        ({"score": "entropy"}, "score"),
        ({"selection": "highest"}, "selection"),
        ({"score": "dynamic_uncertainty", "epochs": 10}, "window"),
        ({"score": "tdds", "epochs": 5}, "tdds"),
        ({"signal": "clean", "record": "online"}, "signal"),
        ({"score": lambda P: P[0, :2]}, "score"),
    ],
)
def test_bad_parameters_raise_before_training(params, match, monkeypatch):
    monkeypatch.setattr(advprune.pruning, "_scoring_run", _no_training)
    X, y = blobs()
    with pytest.raises(ValueError, match=match):
        pruner(**params).fit(X, y)


@pytest.mark.parametrize(
    ("X", "y", "error", "match"),
    [
        (np.zeros(10), np.zeros(10, int), ValueError, "X must have shape"),
        (np.zeros((10, 2)), np.zeros(9, int), ValueError, "y must be 1-D"),
        (np.zeros((10, 2)), np.array(["a", "b"] * 5), TypeError, "integer"),
        (np.zeros((10, 2)), np.zeros(10, int), ValueError, "two classes"),
        (np.full((10, 2), np.nan), np.arange(10) % 2, ValueError, "NaN"),
    ],
)
def test_bad_data_raises(X, y, error, match):
    with pytest.raises(error, match=match):
        pruner(subset_size=1.0).fit(X, y)


def test_bad_embedding_and_subset_raise_before_training(monkeypatch):
    X, y = blobs()
    with pytest.raises(ValueError, match="one row per sample"):
        pruner(subset_size=0.5, embedding=lambda X: np.zeros((3, 2))).fit(X, y)
    monkeypatch.setattr(advprune.pruning, "_scoring_run", _no_training)
    with pytest.raises(ValueError, match="n_neighbors=12"):
        pruner(subset_size=11).fit(X, y)
    y_rare = np.zeros(100, int)
    y_rare[50] = 1
    with pytest.raises(ValueError, match=r"classes \[1\]"):
        pruner(
            subset_size=2, class_balanced=True, extrapolator=KNeighborsRegressor(1)
        ).fit(X, y_rare)


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


# Checks that cannot apply to an estimator that removes samples, or to one whose
# fit needs more rows and classes than the checks provide.
SCORE_IS_A_PARAMETER = (
    "`score` is the importance-score parameter of the public contract "
    "(DESIGN.md section 3), not a score(X, y) method; the check calls the string"
)
EXPECTED_FAILED = {
    "check_fit_score_takes_y": SCORE_IS_A_PARAMETER,
    "check_n_features_in_after_fitting": SCORE_IS_A_PARAMETER,
    "check_fit2d_1sample": "one sample cannot be split into a scored subset "
    "and two classes; the pruner raises a ValueError that names subset_size",
}


@parametrize_with_checks(
    [
        AdversarialPruner(
            **{**FAST, "subset_size": 1.0, "epochs": 2},
            extrapolator=ImportanceExtrapolator(n_neighbors=2),
        )
    ],
    expected_failed_checks=lambda est: EXPECTED_FAILED,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_image_array_pool_is_not_rescanned_for_nan(monkeypatch):
    # uint8 images cannot hold NaN or infinity: the pruner's finite scan must not
    # read (and convert to float) a whole ImageArray pool before training.
    from advprune.datasets import ImageArray

    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 1), np.uint8)
    X = ImageArray(images)

    def no_read(self, key):
        raise AssertionError("the finite scan read the ImageArray")

    monkeypatch.setattr(ImageArray, "__getitem__", no_read)
    pruner()._check_finite(X)
    with pytest.raises(ValueError, match="NaN or infinity"):
        pruner()._check_finite(np.full((4, 1, 8, 8), np.nan, np.float32))
