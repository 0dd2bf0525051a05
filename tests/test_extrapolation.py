import pickle

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.exceptions import NotFittedError
from sklearn.neighbors import KNeighborsRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

from advprune.extrapolation import ImportanceExtrapolator


def _gaussian(n_scored=400, n_queries=300, n_features=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_scored, n_features))
    y = X[:, 0] + 0.3 * rng.normal(size=n_scored)
    Q = rng.normal(size=(n_queries, n_features))
    return X, y, Q


def _clustered(n_scored, n_queries, n_features=32, seed=0):
    """10-class Gaussian mixture with low-rank class covariances."""
    rng = np.random.default_rng(seed)
    centers = 4.0 * rng.normal(size=(10, n_features))
    loadings = rng.normal(size=(10, 8, n_features))

    def draw(n):
        labels = rng.integers(0, 10, size=n)
        latent = rng.normal(size=(n, 8))
        return (
            centers[labels]
            + np.einsum("nj,njd->nd", latent, loadings[labels])
            + 0.3 * rng.normal(size=(n, n_features))
        )

    X, Q = draw(n_scored), draw(n_queries)
    y = X @ rng.normal(size=n_features) / np.sqrt(n_features) + rng.normal(
        size=n_scored
    )
    return X, y, Q


@parametrize_with_checks(
    [
        ImportanceExtrapolator(),
        ImportanceExtrapolator(
            n_neighbors=3, weights="distance", metric="cosine", algorithm="hnsw"
        ),
        ImportanceExtrapolator(n_neighbors=3, calibrate="quantile"),
        ImportanceExtrapolator(n_neighbors=3, device="cpu"),
    ]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_hand_worked_uniform_and_distance_weights():
    X = np.array([[0.0], [1.0], [2.0], [10.0]])
    y = np.array([0.0, 1.0, 2.0, 10.0])
    query = np.array([[0.4]])
    uniform = ImportanceExtrapolator(n_neighbors=2).fit(X, y)
    assert uniform.predict(query) == pytest.approx([0.5])
    # neighbours 0 and 1 at distances 0.4 and 0.6: weights 2.5 and 5/3
    distance = ImportanceExtrapolator(n_neighbors=2, weights="distance").fit(X, y)
    assert distance.predict(query) == pytest.approx([(5 / 3) / (2.5 + 5 / 3)])


def test_default_is_the_papers_setting():
    ext = ImportanceExtrapolator()
    assert ext.n_neighbors == 12
    assert ext.weights == "uniform"
    assert ext.metric == "euclidean"
    assert ext.calibrate is None
    X, y, _ = _gaussian()
    assert ext.fit(X, y).effective_algorithm_ == "exact"


@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_exact_matches_kneighbors_regressor_brute(weights, metric):
    X, y, Q = _gaussian(n_scored=700, n_queries=500, n_features=5)
    ours = ImportanceExtrapolator(weights=weights, metric=metric, batch_size=97)
    reference = KNeighborsRegressor(
        n_neighbors=12, weights=weights, metric=metric, algorithm="brute"
    )
    np.testing.assert_allclose(
        ours.fit(X, y).predict(Q), reference.fit(X, y).predict(Q), rtol=1e-10
    )
    dist, ind = ours.kneighbors(Q)
    ref_dist, ref_ind = reference.kneighbors(Q)
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-7, atol=1e-9)


def test_exact_neighbours_survive_float32_cancellation():
    # Embeddings far from the origin: the float32 expansion |q|^2 - 2 q.r + |r|^2
    # would lose most digits without centring and float64 re-ranking.
    X, y, Q = _gaussian(n_scored=500, n_queries=200, n_features=4, seed=1)
    X, Q = X + 1e4, Q + 1e4
    ours = ImportanceExtrapolator(weights="distance").fit(X, y)
    reference = KNeighborsRegressor(12, weights="distance", algorithm="brute")
    np.testing.assert_array_equal(
        ours.kneighbors(Q, return_distance=False),
        reference.fit(X, y).kneighbors(Q, return_distance=False),
    )


def test_near_ties_below_float32_resolution_are_ranked_exactly():
    # Both references are about 1 away from the query, 1e-9 apart: float32 cannot
    # tell them apart, so the nearer one (index 1) must come from the float64 check.
    X = np.array([[1000.0, 1.0 + 1e-9], [1001.0, 0.0], [990.0, 0.0]])
    ext = ImportanceExtrapolator(n_neighbors=1).fit(X, [0.0, 1.0, 2.0])
    query = np.array([[1000.0, 0.0]])
    assert ext.kneighbors(query, return_distance=False)[0, 0] == 1
    assert ext.predict(query)[0] == 1.0


def test_exact_ties_are_broken_by_index():
    X = np.repeat([[0.0, 0.0], [1.0, 1.0]], 15, axis=0)
    ext = ImportanceExtrapolator(n_neighbors=12).fit(X, np.arange(30.0))
    np.testing.assert_array_equal(
        ext.kneighbors([[0.0, 0.0]], return_distance=False), [np.arange(12)]
    )
    assert ext.predict([[0.0, 0.0]])[0] == pytest.approx(5.5)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"weights": "distance"},
        {"metric": "cosine", "n_neighbors": 5},
        {"calibrate": "quantile", "batch_size": 64},
    ],
)
def test_device_search_finds_the_neighbours_faiss_finds(params):
    # Gaussian rows far from the origin, plus duplicated rows whose exact ties
    # outnumber the candidates of the float32 search (30 copies of each grid
    # point): the lowest indices win, as in FAISS. (Rows tied at a distance
    # that float32 rounds differently per row can fall either way, on either
    # search; the re-ranking only orders the candidates.)
    X, y, Q = _gaussian(n_scored=700, n_queries=300, n_features=6, seed=4)
    grid = np.repeat(np.eye(6), 30, axis=0)
    X = np.concatenate([X + 50.0, grid, X[:40]])
    y = np.concatenate([y, np.arange(len(grid), dtype=float), y[:40]])
    Q = np.concatenate([Q + 50.0, np.eye(6), X[:10]])
    on_cpu = ImportanceExtrapolator(**params).fit(X, y)
    on_device = ImportanceExtrapolator(**params, device="cpu").fit(X, y)
    np.testing.assert_array_equal(on_device.predict(Q), on_cpu.predict(Q))
    for a, b in zip(on_device.kneighbors(Q), on_cpu.kneighbors(Q), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        on_device.kneighbors(return_distance=False),
        on_cpu.kneighbors(return_distance=False),
    )
    # Unpickled, the device copy is rebuilt.
    again = pickle.loads(pickle.dumps(on_device))
    np.testing.assert_array_equal(again.predict(Q), on_cpu.predict(Q))


def test_device_search_needs_the_exact_search_and_a_real_device():
    X, y, _ = _gaussian(n_scored=50, n_queries=1, n_features=3, seed=0)
    with pytest.raises(ValueError, match="algorithm='hnsw'"):
        ImportanceExtrapolator(device="cpu", algorithm="hnsw").fit(X, y)
    with pytest.raises(ValueError, match="device must be"):
        ImportanceExtrapolator(device="gpu0").fit(X, y)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            ImportanceExtrapolator(device="cuda").fit(X, y)


def test_distance_weights_take_coinciding_samples_score():
    X, y, _ = _gaussian()
    ext = ImportanceExtrapolator(weights="distance").fit(X, y)
    np.testing.assert_array_equal(ext.predict(X[:20]), y[:20])


def test_kneighbors_without_queries_excludes_each_sample_itself():
    X, y, _ = _gaussian(n_scored=300)
    ind = (
        ImportanceExtrapolator(n_neighbors=5)
        .fit(X, y)
        .kneighbors(return_distance=False)
    )
    assert not np.any(ind == np.arange(300)[:, np.newaxis])
    reference = KNeighborsRegressor(5, algorithm="brute").fit(X, y)
    np.testing.assert_array_equal(ind, reference.kneighbors(return_distance=False))


def test_predictions_do_not_depend_on_batch_size_or_n_jobs():
    X, y, Q = _clustered(2000, 700)
    for algorithm in ("exact", "hnsw"):
        base = ImportanceExtrapolator(algorithm=algorithm, n_jobs=1)
        expected = base.fit(X, y).predict(Q)
        for params in ({"batch_size": 33}, {"n_jobs": 2}, {"n_jobs": None}):
            other = ImportanceExtrapolator(algorithm=algorithm, **params)
            np.testing.assert_array_equal(other.fit(X, y).predict(Q), expected)


def test_hnsw_ranks_like_exact_on_clustered_embeddings():
    X, y, Q = _clustered(5000, 2000)
    exact = ImportanceExtrapolator().fit(X, y).predict(Q)
    approx = ImportanceExtrapolator(algorithm="hnsw").fit(X, y).predict(Q)
    assert spearmanr(approx, exact).statistic >= 0.99
    # A wide search beam makes the graph search exact on this data.
    wide = ImportanceExtrapolator(algorithm="hnsw", ef_search=400).fit(X, y)
    assert np.mean(wide.predict(Q) == exact) > 0.99


class _GraphFindingNothing:
    """Stands in for an HNSW index whose search comes back empty (-1 ids)."""

    def search(self, queries, k, params=None):
        shape = (queries.shape[0], k)
        return np.full(shape, np.inf, dtype=np.float32), np.full(shape, -1)


def test_queries_the_graph_search_misses_are_answered_exactly():
    X, y, Q = _clustered(500, 100)
    ext = ImportanceExtrapolator(algorithm="hnsw").fit(X, y)
    ext._index = _GraphFindingNothing()
    expected = ImportanceExtrapolator().fit(X, y).predict(Q)
    np.testing.assert_array_equal(ext.predict(Q), expected)


def test_pickle_round_trip_keeps_the_hnsw_index():
    X, y, Q = _clustered(1000, 200)
    ext = ImportanceExtrapolator(algorithm="hnsw").fit(X, y)
    restored = pickle.loads(pickle.dumps(ext))
    np.testing.assert_array_equal(restored.predict(Q), ext.predict(Q))


def test_memmapped_queries_and_output(tmp_path):
    X, y, Q = _gaussian(n_queries=1000)
    np.save(tmp_path / "queries.npy", Q.astype(np.float32))
    queries = np.load(tmp_path / "queries.npy", mmap_mode="r")
    out = np.lib.format.open_memmap(
        tmp_path / "pred.npy", mode="w+", dtype=np.float64, shape=(1000,)
    )
    ext = ImportanceExtrapolator(batch_size=64).fit(X, y)
    returned = ext.predict(queries, out=out)
    assert returned is out
    out.flush()
    expected = ext.predict(queries.astype(np.float64))
    np.testing.assert_array_equal(np.load(tmp_path / "pred.npy"), expected)
    # The pages released after each chunk read back unchanged.
    np.testing.assert_array_equal(queries, Q.astype(np.float32))


def test_caller_arrays_are_not_modified():
    X, y, Q = _gaussian()
    copies = X.copy(), y.copy(), Q.copy()
    ImportanceExtrapolator(metric="cosine", calibrate="quantile").fit(X, y).predict(Q)
    for original, copy in zip((X, y, Q), copies, strict=True):
        np.testing.assert_array_equal(original, copy)


def test_quantile_calibration_hand_worked():
    # Leave-one-out 1-NN predictions of the scored samples: [1, 0, 1, 3], so a
    # prediction of 0, 1 or 3 has mid-rank level 0, 1/2 or 1, sent to the score
    # quantiles 0, 2 (between 1 and 3) and 6.
    X = np.array([[0.0], [1.0], [3.0], [6.0]])
    y = np.array([0.0, 1.0, 3.0, 6.0])
    ext = ImportanceExtrapolator(n_neighbors=1, calibrate="quantile").fit(X, y)
    np.testing.assert_allclose(ext.predict([[0.4], [1.1], [2.9]]), [0.0, 2.0, 6.0])


def _share_in_a_mode(scores):
    return np.mean((np.abs(scores) < 0.2) | (np.abs(scores - 1) < 0.2))


def test_quantile_calibration_keeps_ranks_and_restores_bimodality():
    rng = np.random.default_rng(0)
    X, _, Q = _clustered(3000, 3000, seed=2)
    # Bimodal scores: a smooth latent score pushed into two well-separated modes.
    latent_X, latent_Q = X[:, 0] + X[:, 1], Q[:, 0] + Q[:, 1]
    y = np.where(latent_X > np.median(latent_X), 1.0, 0.0) + 0.05 * rng.normal(
        size=3000
    )
    plain = ImportanceExtrapolator().fit(X, y).predict(Q)
    calibrated = ImportanceExtrapolator(calibrate="quantile").fit(X, y).predict(Q)
    assert spearmanr(plain, calibrated).statistic > 0.999
    assert _share_in_a_mode(y) > 0.95
    assert _share_in_a_mode(calibrated) > 0.85
    assert _share_in_a_mode(plain) < _share_in_a_mode(calibrated) - 0.1
    assert np.std(calibrated) == pytest.approx(np.std(y), rel=0.05)
    assert spearmanr(calibrated, latent_Q).statistic > 0.5


# Bad input: a clear error naming the parameter, raised before any work.


def test_nan_and_inf_are_rejected():
    X, y, Q = _gaussian()
    bad_X = X.copy()
    bad_X[3, 2] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        ImportanceExtrapolator().fit(bad_X, y)
    bad_y = y.copy()
    bad_y[5] = np.inf
    with pytest.raises(ValueError, match="Input y contains infinity"):
        ImportanceExtrapolator().fit(X, bad_y)
    ext = ImportanceExtrapolator().fit(X, y)
    bad_Q = Q.copy()
    bad_Q[-1, 0] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        ext.predict(bad_Q)


def test_nan_in_a_late_chunk_is_found_before_any_prediction_is_written(tmp_path):
    X, y, Q = _gaussian(n_queries=1000)
    Q[-1, -1] = np.nan
    np.save(tmp_path / "q.npy", Q)
    queries = np.load(tmp_path / "q.npy", mmap_mode="r")
    out = np.full(1000, -7.0)
    ext = ImportanceExtrapolator(batch_size=50).fit(X, y)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        ext.predict(queries, out=out)
    assert np.all(out == -7.0)


def test_mismatched_lengths():
    X, y, _ = _gaussian()
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        ImportanceExtrapolator().fit(X, y[:-1])


def test_more_neighbours_than_scored_samples():
    X, y, Q = _gaussian(n_scored=10)
    ext = ImportanceExtrapolator(n_neighbors=11).fit(X, y)
    with pytest.raises(ValueError, match=r"n_neighbors=11 is larger .* 10"):
        ext.predict(Q)
    with pytest.raises(ValueError, match=r"n_neighbors=10 is larger"):
        ImportanceExtrapolator(n_neighbors=10).fit(X, y).kneighbors()
    with pytest.raises(ValueError, match="calibrate='quantile' needs n_neighbors"):
        ImportanceExtrapolator(n_neighbors=10, calibrate="quantile").fit(X, y)


def test_one_dimensional_embeddings():
    X, y, Q = _gaussian()
    with pytest.raises(ValueError, match="Expected 2D array"):
        ImportanceExtrapolator().fit(X[:, 0], y)
    ext = ImportanceExtrapolator().fit(X, y)
    with pytest.raises(ValueError, match="Expected 2D array"):
        ext.predict(Q[0])


def test_predict_before_fit():
    _, _, Q = _gaussian()
    with pytest.raises(NotFittedError, match="ImportanceExtrapolator"):
        ImportanceExtrapolator().predict(Q)


def test_different_number_of_features_at_predict():
    X, y, Q = _gaussian()
    ext = ImportanceExtrapolator().fit(X, y)
    with pytest.raises(ValueError, match="X has 5 features, but .* expecting 6"):
        ext.predict(Q[:, :5])


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("algorithm", "ball_tree"),
        ("metric", "manhattan"),
        ("weights", "gaussian"),
        ("n_neighbors", 0),
        ("ef_search", 0),
        ("batch_size", 0),
        ("calibrate", "isotonic"),
    ],
)
def test_invalid_parameters_name_themselves(param, value):
    X, y, _ = _gaussian()
    with pytest.raises(ValueError, match=f"'{param}' parameter"):
        ImportanceExtrapolator(**{param: value}).fit(X, y)


def test_n_jobs_zero():
    X, y, _ = _gaussian()
    with pytest.raises(ValueError, match="n_jobs == 0"):
        ImportanceExtrapolator(n_jobs=0).fit(X, y)


def test_bad_out_arrays():
    X, y, Q = _gaussian(n_queries=20)
    ext = ImportanceExtrapolator().fit(X, y)
    with pytest.raises(ValueError, match=r"out must have shape \(20,\)"):
        ext.predict(Q, out=np.empty(19))
    with pytest.raises(TypeError, match="out must have a floating-point dtype"):
        ext.predict(Q, out=np.empty(20, dtype=np.int64))
    with pytest.raises(TypeError, match="out must be a numpy array"):
        ext.predict(Q, out=[0.0] * 20)
    read_only = np.empty(20)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        ext.predict(Q, out=read_only)


def test_extrapolate_within_groups_uses_only_same_group_neighbours():
    from advprune.extrapolation import extrapolate

    rng = np.random.default_rng(0)
    E = rng.normal(size=(300, 4))
    groups = rng.integers(0, 3, 300)
    scored = np.sort(rng.choice(300, 90, replace=False))
    scores = rng.normal(size=90)
    out = extrapolate(E, scored, scores, groups=groups)
    np.testing.assert_array_equal(out[scored], scores)
    for g in range(3):
        fit = scored[groups[scored] == g]
        rest = np.setdiff1d(np.flatnonzero(groups == g), scored)
        expected = ImportanceExtrapolator().fit(E[fit], out[fit]).predict(E[rest])
        np.testing.assert_array_equal(out[rest], expected)
    lonely = groups.copy()
    lonely[np.setdiff1d(np.arange(300), scored)[:5]] = 3
    with pytest.raises(ValueError, match="group 3 has no scored sample"):
        extrapolate(E, scored, scores, groups=lonely)


def test_shards_predict_every_row_once_as_one_process_does():
    from advprune.extrapolation import extrapolate

    rng = np.random.default_rng(0)
    E = rng.normal(size=(500, 4))
    scored = rng.choice(500, 60, replace=False)
    whole = extrapolate(E, scored, rng.normal(size=60), chunk_size=40)
    scores = whole[scored]
    outs = []
    for index in range(3):
        out = np.full(500, np.nan)
        extrapolate(E, scored, scores, chunk_size=40, out=out, shard=(index, 3))
        outs.append(~np.isnan(out))
        np.testing.assert_array_equal(out[outs[-1]], whole[outs[-1]])
    assert (np.sum(outs, axis=0) == 1).all()
    for bad, error in (((3, 3), ValueError), ((0,), TypeError), (0.5, TypeError)):
        with pytest.raises(error, match="shard"):
            extrapolate(E, scored, scores, shard=bad)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"clean_weight": "0.5"}, TypeError, "clean_weight must be a real number"),
        ({"class_weight": True}, TypeError, "class_weight must be a real number"),
        ({"clean": [[0.5, np.nan, 0.7, 0.4]]}, ValueError, "clean must be finite"),
        ({"clean": np.zeros((0, 4))}, ValueError, r"clean must have shape"),
        ({"clean": [0.5, 0.9, 0.7, 0.4]}, ValueError, r"clean must have shape"),
        ({"adversarial": [0.1, np.inf, 0.2, 0.3]}, ValueError, "adversarial must be"),
        ({"y": [0, 1]}, ValueError, r"y must have shape \(4,\)"),
        ({"y": [[0, 1, 0, 1]]}, ValueError, r"y must have shape \(4,\)"),
        ({"y": None}, ValueError, "y is required"),
        ({"scored_indices": 1}, ValueError, "scored_indices must be a 1-D array"),
        ({"scored_indices": [0, 4]}, ValueError, "scored_indices must be distinct"),
    ],
)
def test_confidence_scores_names_the_bad_parameter(kwargs, error, match):
    from advprune.extrapolation import confidence_scores

    args = {
        "adversarial": [0.1, 0.9, 0.5, 0.2],
        "clean": [[0.5, 0.9, 0.7, 0.4]],
        "scored_indices": [0, 1],
        "y": [0, 1, 0, 1],
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        confidence_scores(**args)
