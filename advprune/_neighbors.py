"""The nearest-neighbour regressor of extrapolation: ImportanceExtrapolator.

Stage 5 of the method: a small random subset of the pool is scored by a real
(adversarial) training run; every other sample gets the mean score of its ``k = 12``
nearest scored neighbours in embedding space. :class:`ImportanceExtrapolator`
is that regressor, built for pools of millions of samples: the exact search runs
through FAISS's blocked matrix-product search with a fused top-k selection, queries are
read chunk by chunk (memory-mapped arrays included), and an HNSW graph index offers an
approximate search for the largest pools. With ``device=``, the exact search runs
by torch matrix products on that device instead (:mod:`advprune._device_search`).

The module imports numpy, scikit-learn and faiss only; torch is imported only when a
``device`` is asked for, so the neighbour search can be used on embeddings from any
model.
"""

# SPDX-License-Identifier: BSD-3-Clause

from contextlib import contextmanager
from numbers import Integral

import faiss
import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.utils import assert_all_finite
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._mmap import release_pages

__all__ = ["ImportanceExtrapolator"]

# HNSW build settings. The graph degree and the construction beam are fixed because
# they trade build time against recall, and ``ef_search`` already exposes that trade
# at query time, where it can be changed without rebuilding the index.
_HNSW_LINKS = 32
_HNSW_EF_CONSTRUCTION = 64

# Size of one float64 gather block of the exact distances (bytes), so that they
# never need more memory than the float32 search itself.
_GATHER_BLOCK_BYTES = 1 << 24

_FLOAT32_UNIT_ROUNDOFF = 2.0**-24


def _n_candidates(n_neighbors, n_samples_fit):
    """Candidates fetched by the float32 search before the float64 re-ranking.

    The float32 search ranks correctly except where two distances differ by less than
    float32 rounding; a few extra candidates let the float64 re-ranking restore the
    exact order there.
    """
    return min(n_samples_fit, n_neighbors + max(4, n_neighbors // 2))


@contextmanager
def _single_threaded_faiss():
    """Run FAISS (and the OpenBLAS it ships with) on the calling thread only.

    The OpenMP thread count is a per-thread setting, so this affects neither other
    threads nor, once restored, the caller.
    """
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _normalize_rows(X):
    """Rows scaled to unit L2 norm; all-zero rows stay zero, as in scikit-learn."""
    norms = np.sqrt(np.einsum("ij,ij->i", X, X))
    norms[norms == 0.0] = 1.0
    return X / norms[:, np.newaxis]


class ImportanceExtrapolator(RegressorMixin, BaseEstimator):
    """Predict importance scores from the nearest directly scored samples.

    The extrapolation step of large-scale dataset pruning (Nieth et al., 2024): fit on
    the embeddings ``X`` and importance scores ``y`` of a small, directly scored subset
    of the pool, then predict the score of every other sample as the mean score of its
    ``n_neighbors`` nearest scored neighbours in embedding space. Scores keep the
    convention of :mod:`advprune.scores`: higher = more important = kept.

    The default is the paper's setting: 12 neighbours, Euclidean distance, unweighted
    mean, exact search. In exact mode the predictions equal those of
    ``sklearn.neighbors.KNeighborsRegressor(n_neighbors, algorithm="brute")`` up to
    the order of exactly tied neighbours, at close to the machine's matrix-multiply
    throughput.

    Parameters
    ----------
    n_neighbors : int, default=12
        Number of scored neighbours averaged for each prediction. Must not exceed the
        number of scored samples passed to :meth:`fit` (checked when predicting, as
        scikit-learn's neighbour estimators do). The paper uses 12.

    weights : {'uniform', 'distance'}, default='uniform'
        How the neighbours' scores are averaged:

        - ``'uniform'``: unweighted mean (the paper's setting);
        - ``'distance'``: weighted by the inverse distance; a query that coincides
          with scored samples gets the mean of their scores, as in scikit-learn.

    metric : {'euclidean', 'cosine'}, default='euclidean'
        Distance between embeddings. ``'cosine'`` is one minus the cosine similarity;
        all-zero embeddings are at cosine distance 1 from everything.

    algorithm : {'auto', 'exact', 'hnsw'}, default='auto'
        Neighbour search:

        - ``'exact'``: brute force with FAISS's blocked float32 matrix products and a
          fused top-k selection; queries whose k-th and (k+1)-th float32 distances
          lie within float32 rounding error of each other are re-ranked in
          float64, so the neighbours are exact;
        - ``'hnsw'``: approximate search in a FAISS HNSW graph built at :meth:`fit`;
          several times faster per query, with the recall set by ``ef_search``;
        - ``'auto'``: ``'exact'``. An approximate search changes the predictions, so
          it is never chosen implicitly.

    ef_search : int, default=20
        Size of the candidate list explored per query by ``algorithm='hnsw'``
        (FAISS's ``efSearch``; raised to ``n_neighbors`` if lower).
        Larger is slower and closer to exact. Ignored by the exact search.

    calibrate : {None, 'quantile'}, default=None
        Post-processing of the predictions:

        - ``None``: the neighbours' mean as is (the paper's setting). Means of
          neighbours are smoother than the scores they average: the predicted
          distribution is narrower, and bimodal score distributions collapse.
        - ``'quantile'``: map each prediction through the rank it would have among
          the leave-one-out predictions of the scored samples onto the same quantile
          of the scored samples' scores. The ranking of the predictions is unchanged
          (Spearman correlation and the set of lowest-scored samples are identical);
          their distribution becomes that of the directly computed scores, so that
          direct and extrapolated scores can be ranked together. Costs one
          leave-one-out neighbour search over the scored samples at :meth:`fit`.
          Requires ``n_neighbors`` smaller than the number of scored samples.

    batch_size : int, default=8192
        Number of query rows searched at a time by one worker. Memory used by
        :meth:`predict` is proportional to ``batch_size`` times the number of
        workers (plus the fitted embeddings), never to the number of queries.

    n_jobs : int, default=None
        Number of worker threads, each searching its own chunks of ``batch_size``
        queries with single-threaded FAISS. ``None`` means as many as FAISS would
        use OpenMP threads (all cores unless ``OMP_NUM_THREADS`` says otherwise),
        ``-1`` all processors. Independent workers keep every core busy on a
        shared machine, where one OpenMP team would wait for its slowest thread
        at every block. The predictions do not depend on ``n_jobs``. With a
        ``device``, ``None`` means one worker.

    device : str, torch.device or None, default=None
        Where the exact search runs. ``None``: FAISS on the CPU. A device name
        (``"cuda"``, ``"cuda:1"``, ``"cpu"``; see
        :func:`advprune.training.resolve_device`): the scored embeddings are kept
        on that device in float32 and each chunk of queries is searched by one
        matrix product and a top-k there (in full float32, never TF32); the
        near-ties are re-ranked in float64 on the CPU as in the FAISS search, so
        the neighbours, and the predictions, are the same. A chunk needs
        ``batch_size * n_samples_fit_ * 4`` bytes of device memory for its
        distances (lower ``batch_size`` on small GPUs). Requires PyTorch and the
        exact search (not ``algorithm='hnsw'``).

    Attributes
    ----------
    n_features_in_ : int
        Number of embedding dimensions seen during :meth:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :meth:`fit`. Defined only when `X` has feature
        names that are all strings.

    n_samples_fit_ : int
        Number of scored samples seen during :meth:`fit`.

    effective_algorithm_ : {'exact', 'hnsw'}
        The search actually used.

    See Also
    --------
    advprune.metrics.extrapolation_report : Fidelity of the extrapolation, estimated
        by cross-validation on the scored subset alone.
    sklearn.neighbors.KNeighborsRegressor : The same predictions, slower.

    Notes
    -----
    The scored embeddings are kept twice, in float64 for exact distances and in
    float32 for the search (12 bytes per scored value), plus the HNSW graph for
    ``algorithm='hnsw'``.

    Queries given as a read-only ``np.memmap`` (``mode='r'``) are read and released
    chunk by chunk, so predicting a pool larger than memory keeps the resident memory
    bounded by ``batch_size`` times the number of workers; pass a memory-mapped
    ``out`` to write the predictions to disk as well.

    The HNSW graph is built on a single thread: a multi-threaded build inserts
    vectors in a timing-dependent order, and the predictions would then change from
    run to run.

    References
    ----------
    .. [1] B. Nieth, T. Altstidl, L. Schwinn, B. Eskofier. "Large-Scale Dataset Pruning
       in Adversarial Training through Data Importance Extrapolation". ICML 2024
       Workshop on Data-centric Machine Learning Research.

    Examples
    --------
    >>> import numpy as np
    >>> from advprune import ImportanceExtrapolator
    >>> rng = np.random.default_rng(0)
    >>> E_scored = rng.normal(size=(500, 8))      # embeddings of the scored subset
    >>> s_scored = E_scored[:, 0] + 0.1 * rng.normal(size=500)  # their scores
    >>> E_pool = rng.normal(size=(2000, 8))       # embeddings of unscored samples
    >>> ext = ImportanceExtrapolator(n_neighbors=12).fit(E_scored, s_scored)
    >>> s_pool = ext.predict(E_pool)
    >>> s_pool.shape
    (2000,)
    >>> bool(np.corrcoef(s_pool, E_pool[:, 0])[0, 1] > 0.8)
    True
    """

    _parameter_constraints: dict = {
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "weights": [StrOptions({"uniform", "distance"})],
        "metric": [StrOptions({"euclidean", "cosine"})],
        "algorithm": [StrOptions({"auto", "exact", "hnsw"})],
        "ef_search": [Interval(Integral, 1, None, closed="left")],
        "calibrate": [StrOptions({"quantile"}), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [Integral, None],
        "device": "no_validation",  # checked by resolve_device at fit
    }

    def __init__(
        self,
        n_neighbors=12,
        *,
        weights="uniform",
        metric="euclidean",
        algorithm="auto",
        ef_search=20,
        calibrate=None,
        batch_size=8192,
        n_jobs=None,
        device=None,
    ):
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.metric = metric
        self.algorithm = algorithm
        self.ef_search = ef_search
        self.calibrate = calibrate
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.device = device

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Store the scored embeddings and build the search structure.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings of the directly scored samples.

        y : array-like of shape (n_samples,)
            Their importance scores (higher = more important = kept).

        Returns
        -------
        self : ImportanceExtrapolator
            The fitted extrapolator.
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], y_numeric=True)
        n_samples = X.shape[0]
        if self.calibrate == "quantile" and self.n_neighbors >= n_samples:
            raise ValueError(
                f"calibrate='quantile' needs n_neighbors < n_samples for its "
                f"leave-one-out predictions; got n_neighbors={self.n_neighbors} and "
                f"n_samples = {n_samples}."
            )
        if self.n_jobs == 0:
            raise ValueError("n_jobs == 0 has no meaning; pass None, -1 or >= 1.")
        if self.device is not None and self.algorithm == "hnsw":
            raise ValueError(
                "device= runs the exact search; algorithm='hnsw' runs on the CPU. "
                "Pass device=None for 'hnsw', or algorithm='exact'."
            )

        fit_X = np.array(X, dtype=np.float64, order="C")
        if self.metric == "cosine":
            fit_X = _normalize_rows(fit_X)
            self._center = np.zeros(fit_X.shape[1])
        else:
            # Distances are translation invariant; centring shrinks the norms that
            # the float32 expansion |q|^2 - 2 q.r + |r|^2 loses precision to.
            self._center = fit_X.mean(axis=0)
        self._fit_X = fit_X
        self._search_X = np.ascontiguousarray(fit_X - self._center, dtype=np.float32)
        self._search_norm_max = float(
            np.sqrt(np.einsum("ij,ij->i", self._search_X, self._search_X).max())
        )
        self._y = np.asarray(y, dtype=np.float64)
        self.n_samples_fit_ = n_samples
        self.effective_algorithm_ = "hnsw" if self.algorithm == "hnsw" else "exact"
        self._device_references = self._on_device()

        self._index = None
        if self.effective_algorithm_ == "hnsw":
            index = faiss.IndexHNSWFlat(self._search_X.shape[1], _HNSW_LINKS)
            index.hnsw.efConstruction = _HNSW_EF_CONSTRUCTION
            with _single_threaded_faiss():
                index.add(self._search_X)
            self._index = index

        self._calibration = None
        if self.calibrate == "quantile":
            loo = self._aggregate(
                *self._kneighbors_fitted(
                    self.n_neighbors, return_distance=self.weights == "distance"
                )
            )
            self._calibration = _quantile_map_tables(loo, self._y)
        return self

    def predict(self, X, out=None):
        """Predict the importance score of each row of `X`.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Embeddings of the samples to score. A read-only ``np.memmap`` is read
            chunk by chunk and never loaded as a whole.

        out : ndarray of shape (n_queries,), default=None
            Floating-point array to write the predictions into, e.g. a writable
            ``np.memmap`` for pools larger than memory. A new float64 array is
            allocated when None.

        Returns
        -------
        y_pred : ndarray of shape (n_queries,)
            Predicted importance scores (higher = more important = kept); `out`
            itself when given.
        """
        check_is_fitted(self)
        X = self._validate_queries(X)
        self._check_n_neighbors(self.n_neighbors)
        n_queries = X.shape[0]
        out = _check_out(out, n_queries)

        def predict_chunk(start, stop):
            distances, neighbors = self._kneighbors_chunk(
                X[start:stop],
                self.n_neighbors,
                return_distance=self.weights == "distance",
            )
            out[start:stop] = self._aggregate(distances, neighbors)
            release_pages(X[start:stop])

        self._map_chunks(predict_chunk, n_queries)
        return out

    def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
        """Find the nearest scored samples of each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Query embeddings. If None, the neighbours of each scored sample among the
            other scored samples are returned (a sample is not its own neighbour).

        n_neighbors : int, default=None
            Number of neighbours; defaults to the `n_neighbors` parameter.

        return_distance : bool, default=True
            Whether to return the distances as well.

        Returns
        -------
        neigh_dist : ndarray of shape (n_queries, n_neighbors)
            Distances to the neighbours, nearest first, computed in float64. Only
            present if ``return_distance=True``.

        neigh_ind : ndarray of shape (n_queries, n_neighbors)
            Indices of the neighbours among the scored samples, nearest first.
        """
        check_is_fitted(self)
        if n_neighbors is None:
            n_neighbors = self.n_neighbors
        if not isinstance(n_neighbors, Integral) or n_neighbors < 1:
            raise ValueError(f"n_neighbors must be an int >= 1, got {n_neighbors!r}.")
        self._check_n_neighbors(n_neighbors, leave_one_out=X is None)
        if X is None:
            distances, neighbors = self._kneighbors_fitted(n_neighbors)
        else:
            X = self._validate_queries(X)

            def kneighbors_chunk(start, stop):
                found = self._kneighbors_chunk(X[start:stop], n_neighbors)
                release_pages(X[start:stop])
                return found

            parts = self._map_chunks(kneighbors_chunk, X.shape[0])
            distances = np.concatenate([p[0] for p in parts])
            neighbors = np.concatenate([p[1] for p in parts])
        if return_distance:
            return distances, neighbors
        return neighbors

    def _check_n_neighbors(self, n_neighbors, leave_one_out=False):
        """Refuse more neighbours than there are scored samples to average.

        Checked here rather than in fit, as scikit-learn's neighbour estimators do:
        fitting is cheap, and a fitted extrapolator can still answer queries with a
        smaller ``n_neighbors`` passed to :meth:`kneighbors`.
        """
        available = self.n_samples_fit_ - leave_one_out
        if n_neighbors > available:
            raise ValueError(
                f"n_neighbors={n_neighbors} is larger than the number of scored "
                f"samples available as neighbours ({available} of n_samples_fit_ = "
                f"{self.n_samples_fit_}); lower n_neighbors or score more samples."
            )

    def _map_chunks(self, task, n_rows):
        """``task(start, stop)`` for consecutive chunks of rows, results in order.

        Chunks are fixed by ``batch_size`` alone and each is searched the same way
        on whichever worker runs it, so results do not depend on ``n_jobs``.
        """
        if self.n_jobs is None:
            n_workers = 1 if self.device is not None else faiss.omp_get_max_threads()
        else:
            n_workers = effective_n_jobs(self.n_jobs)

        def run(start, stop):
            with _single_threaded_faiss():
                return task(start, stop)

        chunks = (
            (start, min(start + self.batch_size, n_rows))
            for start in range(0, n_rows, self.batch_size)
        )
        return Parallel(n_jobs=n_workers, backend="threading")(
            delayed(run)(start, stop) for start, stop in chunks
        )

    def _validate_queries(self, X):
        """Check `X` for predict without copying or loading an ndarray at once."""
        if not (
            isinstance(X, np.ndarray)
            and X.ndim == 2
            and X.shape[0] > 0
            and X.dtype.kind in "fiu"
        ):
            return validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        # The first chunk goes through scikit-learn's full check (feature count and
        # names); the rest only needs the finiteness check, done before any search so
        # that a bad row cannot leave `out` half written.
        validate_data(self, X[: self.batch_size], reset=False)
        release_pages(X[: self.batch_size])
        for start in range(self.batch_size, X.shape[0], self.batch_size):
            stop = min(start + self.batch_size, X.shape[0])
            assert_all_finite(X[start:stop], input_name="X")
            release_pages(X[start:stop])
        return X

    def _prepare(self, X):
        """Queries as float64 (for re-ranking) and float32 (for the search)."""
        X64 = np.asarray(X, dtype=np.float64)
        if self.metric == "cosine":
            X64 = _normalize_rows(X64)
        X32 = np.ascontiguousarray(X64 - self._center, dtype=np.float32)
        return X64, X32

    def _search(self, X32, n_candidates, exact):
        """Squared float32 distances and indices of candidates; -1 where none."""
        if exact or self._index is None:
            if self._device_references is not None:
                return self._device_references.search(X32, n_candidates)
            return faiss.knn(X32, self._search_X, n_candidates)
        params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, n_candidates))
        return self._index.search(X32, n_candidates, params=params)

    def _float32_tolerance(self, X32):
        """Bound on the float32 error of a difference of two squared distances.

        FAISS computes ``|q|^2 + |r|^2 - 2 q.r`` in float32 from float32 copies of
        the embeddings; each term has a relative error below ``gamma_n = n u / (1 -
        n u)`` (``u`` the unit round-off, ``n`` the number of rounded operations),
        so one squared distance is within ``gamma (|q| + |r|)^2`` of the true
        value. Twice that, with the largest reference norm, bounds the error of a
        difference; the extra factor 2 covers the rounding of the inputs to float32.
        """
        n_terms = X32.shape[1] + 4
        gamma = (
            n_terms * _FLOAT32_UNIT_ROUNDOFF / (1 - n_terms * _FLOAT32_UNIT_ROUNDOFF)
        )
        query_norms = np.sqrt(np.einsum("ij,ij->i", X32, X32, dtype=np.float64))
        return 4.0 * gamma * (query_norms + self._search_norm_max) ** 2

    def _kneighbors_chunk(
        self, X, n_neighbors, exclude=None, exact=False, return_distance=True
    ):
        """Neighbours of one chunk of queries, nearest first.

        `exclude` holds, per query, the index of a scored sample that must not be
        returned (the query itself in leave-one-out searches), or None. `exact`
        forces the exact search whatever the algorithm. Without `return_distance`
        the distances are None and the neighbours of a row come in no particular
        order, which is all an unweighted mean needs.
        """
        X64, X32 = self._prepare(X)
        approximate = self._index is not None and not exact
        n_wanted = n_neighbors + (exclude is not None)
        n_candidates = (
            n_wanted if approximate else _n_candidates(n_wanted, self.n_samples_fit_)
        )
        squared, candidates = self._search(X32, n_candidates, not approximate)
        squared = squared.astype(np.float64)
        invalid = candidates < 0
        if exclude is not None:
            invalid |= candidates == exclude[:, np.newaxis]
        squared[invalid] = np.inf
        order = np.lexsort((candidates, squared), axis=-1)
        squared = np.take_along_axis(squared, order, axis=1)
        candidates = np.take_along_axis(candidates, order, axis=1)

        if not approximate and n_candidates > n_neighbors:
            # The float32 top-k is the exact top-k unless the k-th and (k+1)-th
            # squared distances are closer than float32 error could blur; only
            # those rows (near-ties; about 5% of the benchmark's queries) are
            # re-ranked in float64.
            gap = squared[:, n_neighbors] - squared[:, n_neighbors - 1]
            uncertain = np.flatnonzero(~(gap > self._float32_tolerance(X32)))
            if uncertain.size:
                exact_distances = self._exact_distances(
                    X64[uncertain], candidates[uncertain]
                )
                exact_distances[~np.isfinite(squared[uncertain])] = np.inf
                order = np.lexsort((candidates[uncertain], exact_distances), axis=-1)
                candidates[uncertain] = np.take_along_axis(
                    candidates[uncertain], order, axis=1
                )
        neighbors = candidates[:, :n_neighbors]

        missing = ~np.isfinite(squared[:, n_neighbors - 1])
        if missing.any() and approximate:
            # The graph search found too few neighbours for some queries (possible
            # for tiny or degenerate scored sets); answer those exactly.
            neighbors[missing] = self._kneighbors_chunk(
                np.asarray(X)[missing],
                n_neighbors,
                None if exclude is None else exclude[missing],
                exact=True,
                return_distance=False,
            )[1]
        if not return_distance:
            return None, neighbors
        # Distances in float64 from the original embeddings, nearest first and
        # ties by index, so that the order is exact and does not depend on the
        # order in which the float32 search returned near-equal candidates.
        distances = self._exact_distances(X64, neighbors)
        order = np.lexsort((neighbors, distances), axis=-1)
        return (
            np.take_along_axis(distances, order, axis=1),
            np.take_along_axis(neighbors, order, axis=1),
        )

    def _exact_distances(self, X64, candidates):
        """Float64 distances from each query to its candidates (inf for -1)."""
        n_queries, n_candidates = candidates.shape
        distances = np.empty((n_queries, n_candidates))
        valid = candidates >= 0
        safe = np.where(valid, candidates, 0)
        row_bytes = n_candidates * self._fit_X.shape[1] * 8
        block = max(1, _GATHER_BLOCK_BYTES // row_bytes)
        for start in range(0, n_queries, block):
            rows = slice(start, start + block)
            gathered = self._fit_X[safe[rows]]
            if self.metric == "cosine":
                similarity = np.einsum("ijk,ik->ij", gathered, X64[rows])
                distances[rows] = np.clip(1.0 - similarity, 0.0, 2.0)
            else:
                gathered -= X64[rows, np.newaxis, :]
                distances[rows] = np.sqrt(np.einsum("ijk,ijk->ij", gathered, gathered))
        distances[~valid] = np.inf
        return distances

    def _kneighbors_fitted(self, n_neighbors, return_distance=True):
        """Leave-one-out neighbours of every scored sample among the others."""

        def kneighbors_chunk(start, stop):
            return self._kneighbors_chunk(
                self._fit_X[start:stop],
                n_neighbors,
                np.arange(start, stop),
                return_distance=return_distance,
            )

        parts = self._map_chunks(kneighbors_chunk, self.n_samples_fit_)
        return (
            np.concatenate([p[0] for p in parts]) if return_distance else None,
            np.concatenate([p[1] for p in parts]),
        )

    def _aggregate(self, distances, neighbors):
        """Neighbour scores averaged as `weights` says, then calibrated."""
        if self.weights == "uniform":
            # Summed in index order: the same neighbours give the same bits,
            # however the search happened to order them.
            prediction = self._y[np.sort(neighbors, axis=1)].mean(axis=1)
        else:
            with np.errstate(divide="ignore"):
                weights = 1.0 / distances
            # As in scikit-learn: a query that coincides with scored samples takes
            # the mean of their scores.
            at_zero = np.isinf(weights)
            rows = at_zero.any(axis=1)
            weights[rows] = at_zero[rows]
            scores = self._y[neighbors]
            prediction = (scores * weights).sum(axis=1) / weights.sum(axis=1)
        if self._calibration is not None:
            prediction = _apply_quantile_map(prediction, *self._calibration)
        return prediction

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Quantile-calibrated predictions spread as widely as the scores themselves
        # instead of shrinking towards the conditional mean, so they trade squared
        # error (and R^2) for a faithful score distribution.
        tags.regressor_tags.poor_score = self.calibrate is not None
        return tags

    def _on_device(self):
        """The scored embeddings on ``device`` for the exact search, or None."""
        if self.device is None:
            return None
        from ._device_search import DeviceReferences

        return DeviceReferences(self._search_X, self.device)

    def __getstate__(self):
        state = dict(super().__getstate__())
        if state.get("_index") is not None:
            state["_index"] = faiss.serialize_index(state["_index"])
        # Device tensors are rebuilt from the float32 copy when unpickled.
        state.pop("_device_references", None)
        return state

    def __setstate__(self, state):
        if isinstance(state.get("_index"), np.ndarray):
            state = dict(state, _index=faiss.deserialize_index(state["_index"]))
        super().__setstate__(state)
        if hasattr(self, "_search_X"):
            self._device_references = self._on_device()


def _quantile_map_tables(reference_predictions, scores):
    """Tables of the monotone map from predictions onto the scores' distribution.

    A prediction's level is its mid-rank among the leave-one-out predictions of the
    scored samples (ties share the level of their middle), and it is sent to the
    score quantile at that level.
    """
    n = reference_predictions.shape[0]
    values, first, counts = np.unique(
        np.sort(reference_predictions), return_index=True, return_counts=True
    )
    levels = (first + (counts - 1) / 2.0) / (n - 1)
    return values, levels, np.sort(scores)


def _apply_quantile_map(prediction, values, levels, sorted_scores):
    level = np.interp(prediction, values, levels)
    grid = np.linspace(0.0, 1.0, sorted_scores.shape[0])
    return np.interp(level, grid, sorted_scores)


def _check_out(out, n_queries):
    """The array predictions are written into, checked before any search."""
    if out is None:
        return np.empty(n_queries, dtype=np.float64)
    if not isinstance(out, np.ndarray):
        raise TypeError(
            "out must be a numpy array (for example a writable np.memmap) of shape "
            f"({n_queries},), got {type(out).__name__}."
        )
    if out.shape != (n_queries,):
        raise ValueError(
            f"out must have shape ({n_queries},), one entry per row of X; got shape "
            f"{out.shape}."
        )
    if out.dtype.kind != "f":
        raise TypeError(f"out must have a floating-point dtype, got {out.dtype}.")
    if not out.flags.writeable:
        raise ValueError("out is read-only; pass a writable array.")
    return out
