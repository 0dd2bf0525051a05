"""Stage 5 of the method: scores for the samples the scoring run did not score.

A small random subset of the pool is scored by a real (adversarial) training
run; this module gives every other sample a score on the same scale. The
strategies, each a function on plain arrays:

- :func:`extrapolate`: the paper's: a regressor from an embedding of the
  scored samples to their scores (by default :class:`ImportanceExtrapolator`,
  the mean score of the 12 nearest scored neighbours), optionally within
  groups such as the class labels (same-label neighbours);
- :func:`held_out_scores`: the scoring model's predictions on the unscored
  samples, recorded while it trains on the subset (pool tracking), turned into
  scores and mapped onto the scored samples' scale (:func:`quantile_map`);
- :func:`confidence_scores`: every sample ranked by the scoring model's
  adversarial and clean confidence after training.

The module imports numpy, scikit-learn and faiss only, never torch, so the
strategies work on embeddings and recordings from any model.
"""

# SPDX-License-Identifier: BSD-3-Clause

import operator
import warnings
from numbers import Integral, Real

import numpy as np
from joblib import Parallel, delayed
from scipy.stats import rankdata
from sklearn.base import clone

from ._neighbors import ImportanceExtrapolator, _check_out
from ._progress import progress_bar

STRATEGIES = ("confidence", "held_out", "knn", "class_knn", "learned")
"""tuple of str: The extrapolation strategies of
:class:`advprune.AdversarialPruner` (its ``extrapolation`` parameter)."""

__all__ = [
    "STRATEGIES",
    "ImportanceExtrapolator",
    "check_extrapolator",
    "confidence_scores",
    "extrapolate",
    "held_out_scores",
    "quantile_map",
]


def check_extrapolator(extrapolator):
    """A clone of ``extrapolator`` (``None``: ``ImportanceExtrapolator()``) whose
    parameters are validated, so that a bad one fails before any scoring run.

    Examples
    --------
    >>> from advprune.extrapolation import check_extrapolator
    >>> check_extrapolator(None)
    ImportanceExtrapolator()
    >>> check_extrapolator(ImportanceExtrapolator(weights="nearest"))
    Traceback (most recent call last):
    ...
    sklearn.utils._param_validation.InvalidParameterError: The 'weights' parameter ...
    """
    extrapolator = clone(
        ImportanceExtrapolator() if extrapolator is None else extrapolator
    )
    if hasattr(extrapolator, "_validate_params"):
        extrapolator._validate_params()
    return extrapolator


def extrapolate(
    E,
    scored_indices,
    scores,
    *,
    extrapolator=None,
    groups=None,
    chunk_size=65536,
    n_jobs=None,
    out=None,
    return_extrapolator=False,
    verbose=False,
    shard=None,
):
    """Scores of every sample: direct where scored, predicted from ``E`` elsewhere.

    Stage 5 of the method on plain arrays: fit a regressor from the embedding
    of the scored samples to their scores, and predict the score of every other
    sample, ``chunk_size`` rows at a time.

    Parameters
    ----------
    E : array-like of shape (n_samples, d)
        Embedding of every sample, read chunk by chunk: a ``np.memmap`` or an
        :class:`advprune.embedding.EmbeddedRows` never has to fit in memory.
    scored_indices : array-like of shape (n_scored,)
        Rows of ``E`` scored directly, distinct.
    scores : array-like of shape (n_scored,)
        Their scores; higher = more important = kept.
    extrapolator : regressor or None, default=None
        Any scikit-learn regressor, cloned; ``None`` is
        :class:`ImportanceExtrapolator` with 12 neighbours. When it asks for
        more neighbours (``n_neighbors``) than there are scored samples, it
        uses them all, with a warning.
    groups : array-like of shape (n_samples,) or None, default=None
        Extrapolate within groups: one regressor per group (e.g. the class
        labels, for same-label neighbours), fitted on the group's scored
        samples and predicting its other samples. Every group needs a scored
        sample.
    chunk_size : int, default=65536
        Rows predicted per task.
    n_jobs : int or None, default=None
        Parallel tasks over chunks, through joblib (``None``: 1, or the
        backend of an enclosing ``joblib.parallel_config``).
    out : ndarray of shape (n_samples,) or None, default=None
        Where to write the scores (e.g. a writable memmap); allocated when None.
    return_extrapolator : bool, default=False
        Also return the fitted regressor (with ``groups``: a dict from group to
        regressor).
    verbose : bool, default=False
        A progress bar over the predicted rows, advanced chunk by chunk.
    shard : (int, int) or None, default=None
        ``(index, count)``: predict only chunks ``index, index + count, ...``
        of the unscored rows, the same chunks as without ``shard``, and write
        the direct scores only when ``index == 0``; every other entry of
        ``out`` is left as it is. ``count`` processes with one index each
        predict every row exactly once, each row as one process would (the
        data-parallel pruner merges their ``out``).

    Returns
    -------
    all_scores : ndarray of shape (n_samples,)
        ``scores`` at ``scored_indices``, predictions elsewhere.
    extrapolator : regressor or dict
        The fitted clone(s); only with ``return_extrapolator=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from advprune.extrapolation import extrapolate
    >>> E = np.arange(10.0).reshape(10, 1)
    >>> one = ImportanceExtrapolator(n_neighbors=1)
    >>> extrapolate(E, [0, 9], [0.0, 9.0], extrapolator=one).tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0, 9.0, 9.0, 9.0, 9.0, 9.0]
    >>> labels = np.array([0, 1] * 5)
    >>> extrapolate(E, [0, 9], [0.0, 9.0], extrapolator=one, groups=labels).tolist()
    [0.0, 9.0, 0.0, 9.0, 0.0, 9.0, 0.0, 9.0, 0.0, 9.0]
    """
    n = E.shape[0]
    scored_indices, scores = _check_scored(scored_indices, scores, n)
    out = _check_out(out, n)
    index, count = _check_shard(shard)
    extrapolator = check_extrapolator(extrapolator)
    order = np.argsort(scored_indices, kind="stable")
    scored_indices, scores = scored_indices[order], scores[order]
    scored = np.zeros(n, dtype=bool)
    scored[scored_indices] = True
    if groups is None:
        members = {None: np.ones(n, dtype=bool)}
    else:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups must have one entry per row of E, ({n},).")
        members = {group: groups == group for group in np.unique(groups)}
    fitted, tasks = {}, []
    for group, rows in members.items():
        fit_rows = np.flatnonzero(scored & rows)
        if not len(fit_rows):
            raise ValueError(
                f"group {group.item()!r} has no scored sample to extrapolate from; "
                f"score more samples or extrapolate without groups."
            )
        fitted[group] = _fewer_neighbors_if_needed(clone(extrapolator), len(fit_rows))
        fitted[group].fit(
            np.asarray(E[fit_rows]),
            scores[np.searchsorted(scored_indices, fit_rows)],
        )
        rest = np.flatnonzero(~scored & rows)
        chunks = [
            rest[start : start + chunk_size]
            for start in range(0, len(rest), chunk_size)
        ]
        tasks += [(fitted[group], chunk) for chunk in chunks[index::count]]
    # Dispatch no further ahead than the workers: every chunk read ahead is a
    # chunk_size block of E held in memory.
    predictions = Parallel(n_jobs=n_jobs, return_as="generator", pre_dispatch="n_jobs")(
        delayed(_predict_rows)(regressor, E, chunk) for regressor, chunk in tasks
    )
    with progress_bar(
        total=sum(len(chunk) for _, chunk in tasks),
        desc="extrapolating",
        unit="sample",
        verbose=verbose,
    ) as bar:
        for (_, chunk), predicted in zip(tasks, predictions, strict=True):
            out[chunk] = predicted
            bar.update(len(chunk))
    if index == 0:
        out[scored_indices] = scores
    if not return_extrapolator:
        return out
    return out, (fitted[None] if groups is None else fitted)


def _check_shard(shard):
    if shard is None:
        return 0, 1
    try:
        index, count = (operator.index(v) for v in shard)
    except (TypeError, ValueError):
        raise TypeError(
            f"shard must be None or a pair of ints (index, count); got {shard!r}."
        ) from None
    if not 0 <= index < count:
        raise ValueError(f"shard must have 0 <= index < count; got {shard!r}.")
    return index, count


def _predict_rows(extrapolator, E, rows):
    return extrapolator.predict(np.asarray(E[rows]))


def _fewer_neighbors_if_needed(extrapolator, n_scored):
    """Small data degrades gracefully: a neighbour regressor asked for more
    neighbours than there are scored samples averages over all of them."""
    n_neighbors = extrapolator.get_params().get("n_neighbors")
    if isinstance(n_neighbors, Integral) and n_neighbors > n_scored:
        warnings.warn(
            f"{n_scored} scored samples are fewer than n_neighbors={n_neighbors}; "
            f"extrapolating from all {n_scored} of them.",
            stacklevel=3,
        )
        extrapolator.set_params(n_neighbors=n_scored)
    return extrapolator


def quantile_map(values, reference):
    """Map ``values`` onto the distribution of ``reference``, keeping their order.

    Each value is replaced by the quantile of ``reference`` at the value's
    rank (ties share their average rank), so the result ranks exactly as
    ``values`` and is distributed as ``reference``: two groups of samples scored
    in different ways end on one scale, and a rule that removes the lowest
    scores removes the same fraction of each.

    Parameters
    ----------
    values : array-like of shape (n,)
    reference : array-like of shape (m,)

    Returns
    -------
    mapped : ndarray of shape (n,), float64

    Examples
    --------
    >>> from advprune.extrapolation import quantile_map
    >>> quantile_map([10, 30, 20], [0.0, 1.0]).tolist()
    [0.0, 1.0, 0.5]
    """
    values = np.asarray(values, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if values.ndim != 1 or reference.ndim != 1 or reference.size == 0:
        raise ValueError("values and reference must be 1-D, reference non-empty.")
    if not (np.isfinite(values).all() and np.isfinite(reference).all()):
        raise ValueError("values and reference must be finite.")
    return np.quantile(reference, _normalized_rank(values))


def held_out_scores(held_out, scored_indices, scores):
    """Scores of every sample: direct where scored, held-out values elsewhere,
    mapped onto the scored samples' scale.

    The held-out strategy: while the scoring model trains on the subset, its
    predictions on every other sample are recorded
    (:class:`advprune.training.PoolTracker`), and the importance score computed
    from each sample's held-out series ranks the unscored samples.
    :func:`quantile_map` puts those values on the scale of the scored samples'
    direct scores.

    Parameters
    ----------
    held_out : array-like of shape (n_samples,)
        A score of every sample from its held-out dynamics (the entries of the
        scored rows are not used); higher = more important.
    scored_indices : array-like of shape (n_scored,)
        Rows scored directly.
    scores : array-like of shape (n_scored,)
        Their direct scores.

    Returns
    -------
    all_scores : ndarray of shape (n_samples,)

    Examples
    --------
    >>> from advprune.extrapolation import held_out_scores
    >>> held_out_scores([9.0, 0.1, 0.3, 9.0, 0.2], [0, 3], [5.0, 7.0]).tolist()
    [5.0, 5.0, 7.0, 7.0, 6.0]
    """
    held_out = np.asarray(held_out, dtype=np.float64)
    scored, scores = _check_scored(scored_indices, scores, len(held_out))
    out = np.empty(len(held_out))
    rest = np.setdiff1d(np.arange(len(held_out)), scored, assume_unique=True)
    out[rest] = quantile_map(held_out[rest], scores)
    out[scored] = scores
    return out


def confidence_scores(
    adversarial, clean, scored_indices, *, y=None, clean_weight=0.25, class_weight=0.5
):
    """Scores of every sample from the scoring model's confidence after training.

    The confidence strategy. A sample's confidence is the rank of its
    adversarial true-class probability after the last epoch, blended
    (``clean_weight``) with the rank of its mean clean true-class probability
    over the tracked epochs. The scored samples' confidence is measured on
    samples the model trained on, the others' on held-out ones, so the latter
    are mapped onto the former's distribution (:func:`quantile_map`). Finally
    the between-class differences are shrunk: the score is ``1 - class_weight``
    times the global rank plus ``class_weight`` times the rank within the
    sample's class, because a scoring run on a small subset can find a whole
    class harder than training on the whole pool does, and the lowest-score
    rule would then remove most of that class.

    In scoring runs as short as the scoring run (tens of epochs, far from
    fitting the pool), dynamic uncertainty computed on the whole pool orders
    samples almost as their adversarial confidence does: a sample whose
    probability rises during training moves, one never learned stays low and
    still. The confidence therefore estimates that ranking, for every sample,
    without extrapolating from neighbours. Higher = more important = kept; the
    scores are percentiles in [0, 1].

    Parameters
    ----------
    adversarial : array-like of shape (n_samples,) or None
        True-class probability under attack after the last epoch; ``None``
        when ``clean_weight`` is 1, which reads only the clean series.
    clean : array-like of shape (n_tracked, n_samples)
        Tracked clean true-class probabilities.
    scored_indices : array-like of shape (n_scored,)
        Rows the scoring model trained on.
    y : array-like of shape (n_samples,) or None, default=None
        Class labels; required when ``class_weight > 0``.
    clean_weight : float in [0, 1], default=0.25
        Weight of the clean confidence's rank.
    class_weight : float in [0, 1], default=0.5
        Weight of the within-class rank.

    Returns
    -------
    scores : ndarray of shape (n_samples,), in [0, 1]

    Examples
    --------
    >>> import numpy as np
    >>> from advprune.extrapolation import confidence_scores
    >>> adversarial = np.array([0.1, 0.9, 0.5, 0.2, 0.8, 0.3])
    >>> clean = np.array([[0.5, 0.9, 0.7, 0.4, 0.9, 0.6]])
    >>> s = confidence_scores(adversarial, clean, [0, 1, 2], class_weight=0.0)
    >>> s.round(2).tolist()  # rows 3, 4, 5 mapped onto the scale of rows 0, 1, 2
    [0.1, 0.9, 0.5, 0.1, 0.9, 0.5]
    """
    for name, weight in (
        ("clean_weight", clean_weight),
        ("class_weight", class_weight),
    ):
        if isinstance(weight, bool) or not isinstance(weight, Real):
            raise TypeError(f"{name} must be a real number in [0, 1]; got {weight!r}.")
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"{name} must be in [0, 1]; got {weight!r}.")
    clean = _finite(clean, "clean")
    if clean.ndim != 2 or 0 in clean.shape:
        raise ValueError(
            f"clean must have shape (n_tracked, n_samples), neither 0; got "
            f"{clean.shape}."
        )
    n = clean.shape[1]
    if adversarial is None:
        if clean_weight != 1:
            raise ValueError(
                f"adversarial is required when clean_weight < 1; got clean_weight="
                f"{clean_weight!r}."
            )
    else:
        adversarial = _finite(adversarial, "adversarial")
        if adversarial.shape != (n,):
            raise ValueError(
                f"adversarial must have shape ({n},), one value per column of "
                f"clean; got {adversarial.shape}."
            )
    if class_weight:
        if y is None:
            raise ValueError("y is required when class_weight > 0.")
        y = np.asarray(y)
        if y.shape != (n,):
            raise ValueError(
                f"y must have shape ({n},), one label per column of clean; got "
                f"{y.shape}."
            )
    scored, _ = _check_scored(scored_indices, np.zeros(np.size(scored_indices)), n)
    confidence = _normalized_rank(clean.mean(axis=0))
    if adversarial is not None:
        confidence = (1 - clean_weight) * _normalized_rank(
            adversarial
        ) + clean_weight * confidence
    rest = np.setdiff1d(np.arange(n), scored, assume_unique=True)
    confidence[rest] = quantile_map(confidence[rest], confidence[scored])
    if not class_weight:
        return _normalized_rank(confidence)
    within = np.empty(n)
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        within[members] = _normalized_rank(confidence[members])
    return (1 - class_weight) * _normalized_rank(confidence) + class_weight * within


def _finite(values, name):
    """``values`` as a float64 array, refused unless every value is finite."""
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{name} must be finite; it holds NaN or infinity.")
    return values


def _normalized_rank(values):
    """Average ranks scaled to [0, 1], 0 the lowest (0.5 for a single value)."""
    if len(values) == 1:
        return np.full(1, 0.5)
    return (rankdata(values, method="average") - 1) / (len(values) - 1)


def _check_scored(scored_indices, scores, n):
    scored_indices = np.asarray(scored_indices)
    scores = np.asarray(scores, dtype=np.float64)
    if scored_indices.ndim != 1 or scored_indices.dtype.kind not in "iu":
        raise ValueError("scored_indices must be a 1-D array of row numbers.")
    if scores.shape != scored_indices.shape:
        raise ValueError(
            f"scores must have one value per scored index, shape "
            f"{scored_indices.shape}; got {scores.shape}."
        )
    if len(np.unique(scored_indices)) != len(scored_indices) or not (
        scored_indices.size and 0 <= scored_indices.min() <= scored_indices.max() < n
    ):
        raise ValueError(f"scored_indices must be distinct rows in [0, {n}).")
    return scored_indices, scores
