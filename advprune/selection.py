"""Selection rules: importance scores in, a boolean keep-mask out.

Every rule here follows one convention: a **higher score means a more
important sample, and important samples are KEPT**. Pruning removes samples
from the LOW end of the score range (:func:`select_lowest`), or, for
:func:`coverage_centric`, first the very highest (the "hardest", likely
mislabelled) and then samples spread over the whole range.

Both rules return a boolean mask of shape ``(n_samples,)`` in which ``True``
marks a kept sample, and keep exactly ``n_samples - n_pruned(n_samples,
prune_ratio)`` samples (with ``class_balanced=True``: exactly that many
within each class). They work on plain NumPy arrays (including read-only
memory maps), never modify their inputs, and know nothing about models, so
they can be used on scores from any source.

Ties are broken by sample index, the same way in both rules: samples are
ranked by ``(score, index)``, so among equal scores the sample with the
SMALLER index ranks lower (is pruned first by :func:`select_lowest`) and the
sample with the LARGER index ranks higher (is cut first as "hard" by
:func:`coverage_centric`).
"""

import math
import numbers

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state

__all__ = [
    "RULES",
    "coverage_centric",
    "n_pruned",
    "select",
    "select_lowest",
    "stratified_subset",
]

RULES = ("lowest", "stratified")
"""tuple of str: The selection rules :func:`select` applies by name."""


def stratified_subset(y, size, *, random_state=None):
    """Sorted indices of a class-stratified random subset: the rows to score.

    The subset that the scoring run trains on: ``size`` rows drawn at random
    with the class proportions of ``y`` (scikit-learn's stratified
    ``train_test_split``). When stratifying is impossible (``size`` below the
    number of classes, or a class with a single sample) the rows are drawn
    uniformly at random instead.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels.
    size : int
        Number of rows, ``1 <= size <= n_samples``.
    random_state : int, RandomState or None, default=None

    Returns
    -------
    indices : ndarray of shape (size,), int
        Sorted row indices.

    Examples
    --------
    >>> import numpy as np
    >>> from advprune.selection import stratified_subset
    >>> y = np.array([0] * 8 + [1] * 4)
    >>> subset = stratified_subset(y, 6, random_state=0)
    >>> np.bincount(y[subset]).tolist()
    [4, 2]
    """
    y = np.asarray(y)
    n = len(y)
    if not isinstance(size, numbers.Integral) or not 1 <= size <= n:
        raise ValueError(f"size must be an integer in [1, {n}]; got {size!r}.")
    if size == n:
        return np.arange(n)
    _, counts = np.unique(y, return_counts=True)
    stratify = y if size >= len(counts) and counts.min() >= 2 else None
    subset, _ = train_test_split(
        np.arange(n),
        train_size=int(size),
        stratify=stratify,
        random_state=random_state,
    )
    return np.sort(subset)


def n_pruned(n_samples, prune_ratio):
    """Number of samples a selection rule removes from a group.

    Both selection rules remove exactly ``floor(prune_ratio * n_samples)``
    samples from a group (the whole set, or one class when class-balanced)
    and keep the rest. The product is evaluated in floating point, exactly as
    written, so that callers who compute ``math.floor(prune_ratio * n)``
    themselves get the same count.

    Parameters
    ----------
    n_samples : int
        Number of samples in the group, ``>= 0``.
    prune_ratio : float
        Fraction of samples to remove, in ``[0, 1)``.

    Returns
    -------
    int
        ``floor(prune_ratio * n_samples)``, the number of samples removed.
        ``n_samples`` minus this number are kept.

    Raises
    ------
    TypeError
        If ``n_samples`` is not an integer or ``prune_ratio`` not a real
        number.
    ValueError
        If ``n_samples`` is negative or ``prune_ratio`` outside ``[0, 1)``.

    See Also
    --------
    select_lowest : Removes this many of the lowest-scored samples.
    coverage_centric : Keeps the rest spread across the score range.

    Examples
    --------
    >>> from advprune.selection import n_pruned
    >>> n_pruned(10, 0.5)
    5
    >>> n_pruned(7, 0.5)
    3
    >>> n_pruned(5, 0.0)
    0
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral):
        raise TypeError(f"n_samples must be a non-negative integer, got {n_samples!r}.")
    if n_samples < 0:
        raise ValueError(f"n_samples must be a non-negative integer, got {n_samples}.")
    prune_ratio = _check_fraction(prune_ratio, "prune_ratio")
    return math.floor(prune_ratio * int(n_samples))


def select_lowest(scores, prune_ratio, *, y=None, class_balanced=False):
    """Keep-mask that removes the samples with the LOWEST importance scores.

    This is the pruning rule of the data-importance-extrapolation paper:
    higher score = more important = KEPT; the ``floor(prune_ratio * n)``
    samples with the lowest scores (for dynamic uncertainty: the stable,
    easy, redundant ones) are removed. With ``class_balanced=True`` the same
    rule is applied within each class ``c`` separately, removing the
    ``floor(prune_ratio * n_c)`` lowest-scored samples of that class, so the
    class proportions are preserved up to rounding.

    Ties are broken deterministically by index with a stable sort: among
    samples with equal scores, the one with the SMALLER index is removed
    first.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Finite real importance scores; higher = more important = kept.
        Not modified; read-only arrays and memory maps are fine.
    prune_ratio : float
        Fraction of samples to REMOVE, in ``[0, 1)``. ``0`` keeps every
        sample.
    y : array-like of shape (n_samples,), default=None
        Integer class labels (integral floats are accepted). Required when
        ``class_balanced=True``; otherwise only validated.
    class_balanced : bool, default=False
        If True, remove ``floor(prune_ratio * n_c)`` samples within each
        class ``c`` instead of ``floor(prune_ratio * n)`` from the whole set.

    Returns
    -------
    keep : ndarray of shape (n_samples,), dtype=bool
        True for kept samples, False for pruned ones. Exactly
        ``n - floor(prune_ratio * n)`` entries are True (class-balanced:
        ``n_c - floor(prune_ratio * n_c)`` within each class).

    Raises
    ------
    TypeError
        If ``scores`` or ``y`` is not numeric, or ``prune_ratio`` is not a
        real number.
    ValueError
        If ``scores`` is not 1-D or holds NaN/inf, if ``prune_ratio`` is
        outside ``[0, 1)``, if ``y`` has a different length or non-integral
        values, or if ``class_balanced=True`` without ``y``.

    See Also
    --------
    coverage_centric : Cut the hardest samples, then keep samples spread
        across the whole score range.

    Examples
    --------
    Higher score = kept; the two lowest of five are removed:

    >>> import numpy as np
    >>> from advprune.selection import select_lowest
    >>> scores = np.array([0.9, 0.1, 0.5, 0.3, 0.7])
    >>> select_lowest(scores, 0.4)
    array([ True, False,  True, False,  True])

    Among equal scores the smaller index is removed first:

    >>> select_lowest([1.0, 1.0, 1.0, 2.0], 0.5)
    array([False, False,  True,  True])

    Class-balanced: half of each class is removed, lowest first:

    >>> y = np.array([0, 0, 1, 1, 1, 1])
    >>> select_lowest([5.0, 1.0, 0.2, 0.4, 0.1, 0.3], 0.5, y=y,
    ...               class_balanced=True)
    array([ True, False, False,  True, False,  True])
    """
    scores = _check_scores(scores)
    prune_ratio = _check_fraction(prune_ratio, "prune_ratio")
    groups = _groups(y, class_balanced, scores.shape[0])

    keep = np.ones(scores.shape[0], dtype=bool)
    for idx in groups:
        n_remove = n_pruned(idx.size, prune_ratio)
        # A stable ascending sort ranks equal scores by index, so the earlier
        # index is removed first and the result never depends on the sort
        # implementation.
        order = np.argsort(scores[idx], kind="stable")
        keep[idx[order[:n_remove]]] = False
    return keep


def coverage_centric(
    scores,
    prune_ratio,
    *,
    y=None,
    class_balanced=False,
    hard_cutoff=0.1,
    n_bins=50,
    random_state=None,
):
    """Keep-mask by coverage-centric coreset selection (CCS).

    Coverage-centric coreset selection (Zheng et al., "Coverage-centric
    Coreset Selection for High Pruning Rates", ICLR 2023) keeps samples
    from the WHOLE score range rather than only the top of it, because
    keeping only the highest-scored samples covers the data distribution
    poorly and is reported to fall below random pruning at high prune
    ratios. Score convention as everywhere in :mod:`advprune`: higher score =
    more important (harder, more uncertain); but unlike
    :func:`select_lowest`, this rule does not simply keep the highest
    scores. Per group (the whole set, or each class when
    ``class_balanced=True``) of ``m`` samples:

    1. Hard cutoff: the ``min(floor(hard_cutoff * m), floor(prune_ratio *
       m))`` samples with the HIGHEST scores are removed first; in the
       paper these are the hardest samples, often mislabelled or ambiguous
       (for generated data: off-class images).
    2. The range ``[min, max]`` of the remaining scores is split into
       ``n_bins`` strata of equal width.
    3. The budget of ``m - floor(prune_ratio * m)`` kept samples is
       allocated over the non-empty strata from the smallest to the
       largest: each stratum gets ``min(its size, remaining budget //
       remaining strata)`` (the paper's Algorithm 1), so small strata are
       kept whole and the rest is shared evenly.
    4. Inside each stratum, its allocation is drawn uniformly at random
       without replacement.

    Exactly ``m - floor(prune_ratio * m)`` samples are kept per group; the
    cap on the cutoff in step 1 guarantees that the budget can always be
    met, and ``prune_ratio=0`` keeps everything.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Finite real importance scores; higher = more important (harder).
        Not modified; read-only arrays and memory maps are fine.
    prune_ratio : float
        Fraction of samples to REMOVE, in ``[0, 1)``.
    y : array-like of shape (n_samples,), default=None
        Integer class labels (integral floats are accepted). Required when
        ``class_balanced=True``; otherwise only validated.
    class_balanced : bool, default=False
        If True, run the whole procedure (cutoff, strata, budget) within each
        class separately, so that exactly ``n_c - floor(prune_ratio * n_c)``
        samples of class ``c`` are kept.
    hard_cutoff : float, default=0.1
        Fraction ``beta`` of each group removed first from the top of the
        score range, in ``[0, 1)``; capped at the number of samples to be
        pruned. The paper tunes it per dataset and prune ratio (zero at low
        ratios, growing with the ratio). The default 0.1 removes the top
        10 % as likely off-class samples, a moderate value for generated
        pools that hold such samples; at ``prune_ratio <= 0.1`` the cap makes
        it remove only the highest-scored samples. Set it to 0 to keep the
        hardest samples eligible.
    n_bins : int, default=50
        Number of equal-width score strata (the paper uses 50).
    random_state : int, RandomState instance or None, default=None
        Seeds the uniform draws inside strata. Pass an int for reproducible
        output across calls.

    Returns
    -------
    keep : ndarray of shape (n_samples,), dtype=bool
        True for kept samples, False for pruned ones. Exactly
        ``n - floor(prune_ratio * n)`` entries are True (class-balanced:
        per class).

    Raises
    ------
    TypeError
        If ``scores`` or ``y`` is not numeric, or ``prune_ratio``,
        ``hard_cutoff`` or ``n_bins`` has the wrong type.
    ValueError
        If ``scores`` is not 1-D or holds NaN/inf, if ``prune_ratio`` or
        ``hard_cutoff`` is outside ``[0, 1)``, if ``n_bins < 1``, if ``y``
        has a different length or non-integral values, or if
        ``class_balanced=True`` without ``y``.

    See Also
    --------
    select_lowest : The paper's rule, removing the lowest scores.

    Notes
    -----
    Ties at the hard cutoff are broken by index like in
    :func:`select_lowest`: among equal scores the LARGER index ranks higher
    and is cut first. Classes are processed in sorted label order with one
    random generator, so the result depends only on the inputs and
    ``random_state``.

    Examples
    --------
    Ten samples, 50 % pruned: the single highest score (index 9) is cut as
    "hard", then five samples are kept spread over five strata, one per
    stratum, from the low end as well as the high end:

    >>> import numpy as np
    >>> from advprune.selection import coverage_centric
    >>> scores = np.array([0.0, 0.1, 1.0, 1.1, 2.0, 2.1, 3.0, 3.1, 4.0, 9.0])
    >>> keep = coverage_centric(scores, 0.5, n_bins=5, random_state=0)
    >>> int(keep.sum())
    5
    >>> bool(keep[9])
    False
    >>> np.floor(scores[keep]).astype(int).tolist()
    [0, 1, 2, 3, 4]

    ``prune_ratio=0`` keeps every sample:

    >>> bool(coverage_centric(scores, 0.0, random_state=0).all())
    True
    """
    scores = _check_scores(scores)
    prune_ratio = _check_fraction(prune_ratio, "prune_ratio")
    hard_cutoff = _check_fraction(hard_cutoff, "hard_cutoff")
    if isinstance(n_bins, bool) or not isinstance(n_bins, numbers.Integral):
        raise TypeError(f"n_bins must be a positive integer, got {n_bins!r}.")
    if n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins}.")
    groups = _groups(y, class_balanced, scores.shape[0])
    rng = check_random_state(random_state)

    keep = np.zeros(scores.shape[0], dtype=bool)
    for idx in groups:
        kept = _coverage_centric_group(
            np.asarray(scores[idx], dtype=np.float64),
            prune_ratio,
            hard_cutoff,
            int(n_bins),
            rng,
        )
        keep[idx[kept]] = True
    return keep


def _coverage_centric_group(scores, prune_ratio, hard_cutoff, n_bins, rng):
    """Positions (into ``scores``) kept by CCS within one group."""
    m = scores.shape[0]
    n_remove = n_pruned(m, prune_ratio)
    budget = m - n_remove
    n_hard = min(math.floor(hard_cutoff * m), n_remove)

    order = np.argsort(scores, kind="stable")
    candidates = order[: m - n_hard]
    if candidates.size == 0:
        return candidates

    values = scores[candidates]
    low, high = values[0], values[-1]
    # Halving both ends keeps the span finite even for scores near the
    # float64 limits; the scaling cancels in the ratio.
    span = 0.5 * high - 0.5 * low
    if span > 0:
        position = (0.5 * values - 0.5 * low) / span
        strata = np.minimum((position * n_bins).astype(np.intp), n_bins - 1)
    else:
        strata = np.zeros(candidates.size, dtype=np.intp)
    sizes = np.bincount(strata, minlength=n_bins)

    allocation = np.zeros(n_bins, dtype=np.intp)
    non_empty = np.flatnonzero(sizes)
    # Smallest strata first: each takes at most an even share of what is
    # left, so budget freed by small strata flows to the larger ones. The
    # last (largest) stratum absorbs the remainder, which it can always hold.
    remaining = budget
    by_size = non_empty[np.argsort(sizes[non_empty], kind="stable")]
    for i, stratum in enumerate(by_size):
        share = remaining // (by_size.size - i)
        allocation[stratum] = min(sizes[stratum], share)
        remaining -= allocation[stratum]

    # Uniform sampling without replacement inside every stratum at once:
    # order by (stratum, random key) and take the first `allocation` of each.
    keys = rng.random_sample(candidates.size)
    by_stratum = np.lexsort((keys, strata))
    sorted_strata = strata[by_stratum]
    starts = np.cumsum(sizes) - sizes
    rank_in_stratum = np.arange(candidates.size) - starts[sorted_strata]
    chosen = by_stratum[rank_in_stratum < allocation[sorted_strata]]
    return candidates[chosen]


def select(
    scores,
    prune_ratio,
    *,
    rule="lowest",
    y=None,
    class_balanced=False,
    random_state=None,
):
    """Keep-mask of a selection rule named by ``rule``: the pruning stage.

    The one dispatch from a rule's name to its function, used by
    :class:`advprune.AdversarialPruner`, ``advprune prune`` and the benchmarks.
    Higher score = more important = kept.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Finite importance scores; higher = more important = kept.
    prune_ratio : float
        Fraction of samples REMOVED, in ``[0, 1)``.
    rule : {"lowest", "stratified"}, default="lowest"
        ``"lowest"``: :func:`select_lowest`, remove the lowest scores (the
        paper's rule). ``"stratified"``: :func:`coverage_centric`, drop the
        highest-scored few percent, then keep samples spread evenly across
        the score range.
    y : array-like of shape (n_samples,), default=None
        Class labels; required with ``class_balanced=True``.
    class_balanced : bool, default=False
        Apply the rule within each class.
    random_state : int, RandomState or None, default=None
        Seeds the draws of ``"stratified"``; ``"lowest"`` draws nothing.

    Returns
    -------
    keep : ndarray of shape (n_samples,), dtype=bool
        True for kept samples; exactly ``n - floor(prune_ratio * n)`` of them
        (class-balanced: within each class).

    Examples
    --------
    >>> from advprune.selection import select
    >>> select([0.9, 0.1, 0.5, 0.3], 0.5)
    array([ True, False,  True, False])
    >>> select([0.9, 0.1, 0.5, 0.3], 0.5, y=["a", "a", "b", "b"],
    ...        class_balanced=True)
    array([ True, False,  True, False])
    """
    if rule == "stratified":
        return coverage_centric(
            scores,
            prune_ratio,
            y=y,
            class_balanced=class_balanced,
            random_state=random_state,
        )
    if rule != "lowest":
        raise ValueError(f"rule must be one of {RULES}; got {rule!r}.")
    return select_lowest(scores, prune_ratio, y=y, class_balanced=class_balanced)


def _check_scores(scores):
    """Validate scores as a finite real 1-D array without copying it."""
    scores = np.asarray(scores)
    if scores.dtype.kind not in "biuf":
        raise TypeError(
            f"scores must hold real numbers, got an array of dtype {scores.dtype}."
        )
    if scores.ndim != 1:
        raise ValueError(
            f"scores must be a 1-D array of shape (n_samples,), got shape "
            f"{scores.shape}."
        )
    if scores.dtype.kind == "f" and not np.isfinite(scores).all():
        raise ValueError("scores must be finite; found NaN or infinity.")
    return scores


def _check_fraction(value, name):
    """Validate a fraction in [0, 1) and return it as a Python float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1), got {value!r}.")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}.")
    return value


def _groups(y, class_balanced, n_samples):
    """Index arrays of the groups a rule works in, each sorted ascending."""
    if not isinstance(class_balanced, bool | np.bool_):
        raise TypeError(f"class_balanced must be a bool, got {class_balanced!r}.")
    if y is not None:
        y = _check_labels(y, n_samples)
    if not class_balanced:
        return [np.arange(n_samples)]
    if y is None:
        raise ValueError("y is required when class_balanced=True.")
    _, codes = np.unique(y, return_inverse=True)
    # A stable sort keeps each class's indices in ascending order, which the
    # index-based tie-breaking relies on.
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes)
    return np.split(order, np.cumsum(counts)[:-1])


def _check_labels(y, n_samples):
    """Validate class labels: 1-D, one per score, integers or strings."""
    y = np.asarray(y)
    if y.dtype.kind not in "biufSU":
        raise TypeError(
            f"y must hold integer or string class labels, got dtype {y.dtype}."
        )
    if y.ndim != 1 or y.shape[0] != n_samples:
        raise ValueError(
            f"y must be a 1-D array with one label per score ({n_samples}), got "
            f"shape {y.shape}."
        )
    if y.dtype.kind == "f" and not (np.isfinite(y) & (y == np.round(y))).all():
        raise ValueError("y must hold integer class labels; found non-integral values.")
    return y
