"""Importance scores computed from recorded training dynamics.

Every score in this module is a pure NumPy function: arrays of per-epoch
predictions in, one float64 score per sample out. They follow one
convention: **a higher score means a more important sample, and important
samples are KEPT** by the pruning rules in :mod:`advprune.selection` (which
remove the samples with the lowest scores). Where the literature's raw
quantity runs the other way (a low area under the margin marks a hard
sample), the function returns it negated, and its docstring says so.

Two kinds of input are used:

``P`` : array of shape (n_epochs, n_samples)
    The probability of each sample's TRUE class after every epoch, in
    ``[0, 1]``. Used by :func:`dynamic_uncertainty`, :func:`frequency_score`
    and :func:`mean_loss`.
``probas`` : array of shape (n_epochs, n_samples, n_classes)
    The full predicted class distribution after every epoch, in ``[0, 1]``,
    together with integer labels ``y`` of shape (n_samples,) where the score
    needs them. Used by :func:`forgetting_events`, :func:`el2n`, :func:`aum`
    and :func:`tdds`. Rows are used as given (not renormalised), so float16
    rounding of stored probabilities is harmless.

Inputs may be any array-like, including read-only or float16
``np.memmap`` arrays; they are never modified. ``probas`` is read one epoch
at a time, so a memory-mapped tensor is never loaded whole. Invalid input
(wrong number of dimensions, NaN or infinity, probabilities outside
``[0, 1]``, labels of the wrong length, type or range, too few epochs for
the score) raises a ``ValueError`` or ``TypeError`` naming the parameter
before anything is computed.

:data:`SCORES` maps the names accepted by the pruner to these functions, and
:func:`requires_probas` / :func:`requires_labels` say which inputs a named
score takes. :func:`compute_score` is the one dispatch from a name (or a
callable) and a recording of training dynamics to the scores, used by the
pruner, the command line and the benchmarks alike.
"""

import numbers

import numpy as np

__all__ = [
    "SCORES",
    "aum",
    "compute_score",
    "dynamic_uncertainty",
    "el2n",
    "forgetting_events",
    "frequency_score",
    "mean_loss",
    "requires_labels",
    "requires_probas",
    "tdds",
]

# Probabilities are clipped here before a logarithm: a float16 record rounds
# small probabilities to exactly 0, which would otherwise give infinite
# losses and margins.
_EPS = 1e-12

# Added inside the logarithms of TDDS, as in the reference implementation,
# so that our scores agree with the published ones when a probability is 0.
_TDDS_EPS = 1e-8


def dynamic_uncertainty(P, window=10):
    """Dynamic uncertainty: mean sliding-window std of the true-class probability.

    For each window start ``i = 0, ..., K - J`` (``K = n_epochs``,
    ``J = window``), ``u_i`` is the sample standard deviation (``ddof=1``) of
    ``P[i:i + J]``; the score is the mean of the ``K - J + 1`` values ``u_i``
    [1]_. A sample whose prediction keeps moving during training is
    uncertain and scores high; one that is learned early and stays learned
    (or is never learned and stays so) scores near 0.

    **Higher score = more important = kept.** This is the direction of [1]_
    and of the data-importance-extrapolation paper [2]_: the samples with the
    lowest dynamic uncertainty are pruned.

    Parameters
    ----------
    P : array-like of shape (n_epochs, n_samples)
        True-class probabilities after every epoch, in ``[0, 1]``. Any real
        dtype (float16 memmaps included); not modified.
    window : int, default=10
        Window length ``J``, at least 2 (a standard deviation with
        ``ddof=1`` needs two values).

    Returns
    -------
    scores : ndarray of shape (n_samples,), dtype=float64
        Non-negative dynamic uncertainty; higher = more important = kept.

    Raises
    ------
    TypeError
        If ``P`` is not real-valued or ``window`` is not an integer.
    ValueError
        If ``P`` is not 2-D, holds NaN/inf or values outside ``[0, 1]``, if
        ``window < 2``, or if ``P`` does not have more than ``window``
        epochs.

    See Also
    --------
    frequency_score : Another score of how much the series oscillates.

    Notes
    -----
    The window starts run over ``0, ..., K - J``, i.e. ``K - J + 1`` windows,
    as in the definition of [1]_, so the last epoch is always used. The
    authors' released code averages over the ``K - J`` starts
    ``0, ..., K - J - 1`` only, dropping the last window; we follow the
    paper. More than ``window`` epochs are required so that the score
    actually slides (at least two windows here, at least one under either
    convention); with exactly ``window`` epochs it would reduce to a single
    standard deviation.

    References
    ----------
    .. [1] M. He, S. Yang, T. Huang, B. Zhao, "Large-scale Dataset Pruning
       with Dynamic Uncertainty", arXiv:2306.05175, 2023.
    .. [2] B. Nieth, T. Altstidl, L. Schwinn, B. Eskofier, "Large-Scale
       Dataset Pruning in Adversarial Training through Data Importance
       Extrapolation", ICML 2024 Workshop on Data-centric Machine Learning
       Research.

    Examples
    --------
    The first sample flips between 0.1 and 0.9; each window of two epochs has
    standard deviation ``0.8 / sqrt(2)``. The second sample never moves:

    >>> import numpy as np
    >>> from advprune.scores import dynamic_uncertainty
    >>> P = np.array([[0.1, 0.9],
    ...               [0.9, 0.9],
    ...               [0.1, 0.9],
    ...               [0.9, 0.9]])
    >>> print(np.round(dynamic_uncertainty(P, window=2), 4))
    [0.5657 0.    ]
    """
    P = _check_series(P)
    window = _check_int(window, "window", low=2)
    n_epochs = P.shape[0]
    if n_epochs <= window:
        raise ValueError(
            f"dynamic_uncertainty needs more than window={window} epochs; "
            f"P has {n_epochs} (P must be of shape (n_epochs, n_samples))."
        )
    n_windows = n_epochs - window + 1
    total = np.zeros(P.shape[1])
    # One window at a time keeps memory at O(window * n_samples) instead of
    # materialising every window at once.
    for start in range(n_windows):
        total += P[start : start + window].std(axis=0, ddof=1)
    return total / n_windows


def frequency_score(P):
    """Frequency score: spectral energy of the true-class probability series.

    ``F = numpy.fft.fft(P, axis=0)`` is the discrete Fourier transform of
    each sample's series over the ``K = n_epochs`` epochs; the score is the
    sum of ``|F_f|`` over all non-zero frequency bins ``f = 1, ..., K - 1``
    (the "FP" score of [1]_). The zero-frequency bin (the series' sum) is
    left out, so only change over time counts: a constant series scores 0,
    and a series that oscillates strongly scores high.

    **Higher score = more important = kept**, the same direction as dynamic
    uncertainty: the samples whose prediction changes least are pruned.

    Parameters
    ----------
    P : array-like of shape (n_epochs, n_samples)
        True-class probabilities after every epoch, in ``[0, 1]``, at least
        two epochs. Any real dtype (float16 memmaps included); not modified.

    Returns
    -------
    scores : ndarray of shape (n_samples,), dtype=float64
        Non-negative frequency score; higher = more important = kept.

    Raises
    ------
    TypeError
        If ``P`` is not real-valued.
    ValueError
        If ``P`` is not 2-D, holds NaN/inf or values outside ``[0, 1]``, or
        has fewer than two epochs.

    See Also
    --------
    dynamic_uncertainty : The windowed standard-deviation score.

    Notes
    -----
    This is the full FFT, not ``numpy.fft.rfft``. For a real series
    ``|F_f| = |F_{K-f}|``, so every frequency below the Nyquist frequency is
    counted twice and the Nyquist bin (``f = K/2``, for even ``K``) once.

    References
    ----------
    .. [1] B. Nieth, T. Altstidl, L. Schwinn, B. Eskofier, "Large-Scale
       Dataset Pruning in Adversarial Training through Data Importance
       Extrapolation", ICML 2024 Workshop on Data-centric Machine Learning
       Research.

    Examples
    --------
    For ``[1, 0, 1, 0]`` the bins are ``F = [2, 0, 2, 0]``, so the score is
    2; a constant series has no energy outside bin 0:

    >>> import numpy as np
    >>> from advprune.scores import frequency_score
    >>> P = np.array([[1.0, 0.3],
    ...               [0.0, 0.3],
    ...               [1.0, 0.3],
    ...               [0.0, 0.3]])
    >>> print(np.round(frequency_score(P), 4))
    [2. 0.]
    """
    P = _check_series(P)
    _check_min_epochs(P.shape[0], 2, "frequency_score", "P")
    spectrum = np.fft.fft(P, axis=0)
    return np.abs(spectrum[1:]).sum(axis=0)


def mean_loss(P):
    """Mean cross-entropy loss of the true class over all recorded epochs.

    The score is ``mean_t -log(P[t])``, with ``P`` clipped below at
    ``1e-12`` so that probabilities stored as exactly 0 (float16 underflow)
    give a large but finite loss (about 27.6) instead of infinity.

    **Higher score = more important = kept**: a sample with a high average
    loss is hard (or mislabelled) and is kept; samples the model fits
    easily throughout training are pruned.

    Parameters
    ----------
    P : array-like of shape (n_epochs, n_samples)
        True-class probabilities after every epoch, in ``[0, 1]``, at least
        one epoch. Any real dtype (float16 memmaps included); not modified.

    Returns
    -------
    scores : ndarray of shape (n_samples,), dtype=float64
        Non-negative mean loss; higher = more important = kept.

    Raises
    ------
    TypeError
        If ``P`` is not real-valued.
    ValueError
        If ``P`` is not 2-D, has no epochs, or holds NaN/inf or values
        outside ``[0, 1]``.

    Examples
    --------
    ``-(log 0.5 + log 0.25) / 2 = 1.5 log 2`` for the first sample, ``-log
    0.5 = log 2`` for the second:

    >>> import numpy as np
    >>> from advprune.scores import mean_loss
    >>> P = np.array([[0.5, 0.5],
    ...               [0.25, 0.5]])
    >>> print(np.round(mean_loss(P), 4))
    [1.0397 0.6931]
    """
    P = _check_series(P)
    _check_min_epochs(P.shape[0], 1, "mean_loss", "P")
    return -np.log(np.maximum(P, _EPS)).mean(axis=0)


def forgetting_events(probas, y, never_learned="max"):
    """Number of forgetting events of each sample during training.

    A sample is classified correctly at epoch ``t`` when
    ``argmax(probas[t, i]) == y[i]`` (ties go to the lowest class index, as
    in ``numpy.argmax``). A forgetting event is a transition from correct at
    epoch ``t`` to incorrect at epoch ``t + 1`` [1]_; the score counts them
    over the ``K = n_epochs`` recorded epochs.

    **Higher score = more important = kept.** Frequently forgotten samples
    are the informative ones in [1]_; "unforgettable" samples (learned once,
    never forgotten) score 0 and are pruned first.

    Parameters
    ----------
    probas : array-like of shape (n_epochs, n_samples, n_classes)
        Predicted class probabilities after every epoch, in ``[0, 1]``, at
        least two epochs and two classes. Float16 memmaps are fine; read one
        epoch at a time and not modified.
    y : array-like of shape (n_samples,)
        Integer class labels in ``[0, n_classes)``.
    never_learned : {"max", "zero"}, default="max"
        Score of samples that are misclassified at every epoch. ``"max"``
        gives them ``n_epochs``, above any count that can occur (at most
        ``K // 2`` events fit in ``K`` epochs), following [1]_, which treats
        never-learned samples as forgotten infinitely often, so they are
        kept first. ``"zero"`` gives them 0, ranking them with the
        unforgettable samples.

    Returns
    -------
    scores : ndarray of shape (n_samples,), dtype=float64
        Number of forgetting events (or ``n_epochs`` for never-learned
        samples with ``never_learned="max"``); higher = more important =
        kept.

    Raises
    ------
    TypeError
        If ``probas`` is not real-valued or ``y`` not integer.
    ValueError
        If ``probas`` is not 3-D, holds NaN/inf or values outside ``[0, 1]``,
        has fewer than two epochs or classes, if ``y`` has the wrong length
        or a label outside ``[0, n_classes)``, or if ``never_learned`` is
        not ``"max"`` or ``"zero"``.

    References
    ----------
    .. [1] M. Toneva, A. Sordoni, R. Tachet des Combes, A. Trischler,
       Y. Bengio, G. J. Gordon, "An Empirical Study of Example Forgetting
       during Deep Neural Network Learning", ICLR 2019.

    Examples
    --------
    Sample 0 goes correct, wrong, correct, wrong (2 events); sample 1 is
    always right (0 events); sample 2 (label 1) is never right:

    >>> import numpy as np
    >>> from advprune.scores import forgetting_events
    >>> right, wrong = [0.9, 0.1], [0.2, 0.8]
    >>> probas = np.array([[right, right, right],
    ...                    [wrong, right, right],
    ...                    [right, right, right],
    ...                    [wrong, right, right]])
    >>> y = np.array([0, 0, 1])
    >>> print(forgetting_events(probas, y))
    [2. 0. 4.]
    >>> print(forgetting_events(probas, y, never_learned="zero"))
    [2. 0. 0.]
    """
    probas = _check_probas(probas)
    n_epochs, n_samples, n_classes = probas.shape
    _check_min_epochs(n_epochs, 2, "forgetting_events", "probas")
    y = _check_labels(y, n_samples, n_classes)
    if never_learned not in ("max", "zero"):
        raise ValueError(
            f'never_learned must be "max" or "zero", got {never_learned!r}.'
        )
    was_correct = np.argmax(probas[0], axis=1) == y
    ever_correct = was_correct.copy()
    counts = np.zeros(n_samples, dtype=np.int64)
    for epoch in range(1, n_epochs):
        correct = np.argmax(probas[epoch], axis=1) == y
        counts += was_correct & ~correct
        ever_correct |= correct
        was_correct = correct
    scores = counts.astype(np.float64)
    scores[~ever_correct] = n_epochs if never_learned == "max" else 0.0
    return scores


def el2n(probas, y, epochs=None):
    """EL2N: L2 norm of the error vector, averaged over early epochs.

    The score is the mean over the first ``epochs`` recorded epochs of
    ``||probas[t, i] - onehot(y[i])||_2`` [1]_, a value in
    ``[0, sqrt(2)]``. Paul et al. compute it early in training and average
    it over several independently trained models; averaging over the first
    epochs of one run is our stand-in for that, and keeps the early-training
    signal that makes EL2N informative.

    **Higher score = more important = kept.** A large error means a hard (or
    mislabelled) sample; [1]_ prunes the samples with the smallest EL2N.

    Parameters
    ----------
    probas : array-like of shape (n_epochs, n_samples, n_classes)
        Predicted class probabilities after every epoch, in ``[0, 1]``, at
        least two classes. Float16 memmaps are fine; read one epoch at a
        time and not modified.
    y : array-like of shape (n_samples,)
        Integer class labels in ``[0, n_classes)``.
    epochs : int, default=None
        Number of leading epochs to average over, in ``[1, n_epochs]``.
        ``None`` uses the first ``max(1, n_epochs // 4)`` epochs, the early
        phase of training.

    Returns
    -------
    scores : ndarray of shape (n_samples,), dtype=float64
        Mean early-training error norm; higher = more important = kept.

    Raises
    ------
    TypeError
        If ``probas`` is not real-valued, ``y`` not integer or ``epochs``
        not an integer.
    ValueError
        If ``probas`` is not 3-D, has no epochs or fewer than two classes,
        holds NaN/inf or values outside ``[0, 1]``, if ``y`` has the wrong
        length or a label outside ``[0, n_classes)``, or if ``epochs`` is
        outside ``[1, n_epochs]``.

    References
    ----------
    .. [1] M. Paul, S. Ganguli, G. K. Dziugaite, "Deep Learning on a Data
       Diet: Finding Important Examples Early in Training", NeurIPS 2021.

    Examples
    --------
    With 4 epochs the default averages the first one: ``||(0.6, 0.4) -
    (1, 0)|| = 0.4 sqrt(2)`` and ``||(0.5, 0.5) - (0, 1)|| = 0.5 sqrt(2)``:

    >>> import numpy as np
    >>> from advprune.scores import el2n
    >>> probas = np.array([[[0.6, 0.4], [0.5, 0.5]]] + 3 * [[[1.0, 0.0], [0.0, 1.0]]])
    >>> y = np.array([0, 1])
    >>> print(np.round(el2n(probas, y), 4))
    [0.5657 0.7071]
    >>> print(np.round(el2n(probas, y, epochs=2), 4))
    [0.2828 0.3536]
    """
    probas = _check_probas(probas)
    n_epochs, n_samples, n_classes = probas.shape
    _check_min_epochs(n_epochs, 1, "el2n", "probas")
    y = _check_labels(y, n_samples, n_classes)
    if epochs is None:
        epochs = max(1, n_epochs // 4)
    else:
        epochs = _check_int(epochs, "epochs", low=1, high=n_epochs)
    rows = np.arange(n_samples)
    total = np.zeros(n_samples)
    for epoch in range(epochs):
        error = probas[epoch].astype(np.float64)
        error[rows, y] -= 1.0
        total += np.sqrt(np.square(error).sum(axis=1))
    return total / epochs


def aum(probas, y):
    """Area under the margin, NEGATED so that hard samples score high.

    The margin at epoch ``t`` is ``log p_y - max_{c != y} log p_c``, the
    log-probability of the true class minus the largest other one. Because
    differences of log-softmax values equal differences of logits, this is
    the logit margin of [1]_. The area under the margin (AUM) is its mean
    over the ``n_epochs`` recorded epochs, with probabilities clipped below
    at ``1e-12`` so that float16 zeros give finite margins.

    **Higher score = more important = kept.** A low (or negative) AUM marks a
    hard, ambiguous or mislabelled sample, and a high AUM an easy one, so
    this function returns ``-AUM``: the easiest samples (largest margins)
    get the lowest scores and are pruned first. Samples that look
    mislabelled (the lowest AUM in [1]_) rank highest and are kept; remove
    them separately if label noise is a concern.

    Parameters
    ----------
    probas : array-like of shape (n_epochs, n_samples, n_classes)
        Predicted class probabilities after every epoch, in ``[0, 1]``, at
        least one epoch and two classes. Float16 memmaps are fine; read one
        epoch at a time and not modified.
    y : array-like of shape (n_samples,)
        Integer class labels in ``[0, n_classes)``.

    Returns
    -------
    scores : ndarray of shape (n_samples,), dtype=float64
        Negated area under the margin; higher = more important = kept.

    Raises
    ------
    TypeError
        If ``probas`` is not real-valued or ``y`` not integer.
    ValueError
        If ``probas`` is not 3-D, has no epochs or fewer than two classes,
        holds NaN/inf or values outside ``[0, 1]``, or if ``y`` has the
        wrong length or a label outside ``[0, n_classes)``.

    References
    ----------
    .. [1] G. Pleiss, T. Zhang, E. Elenberg, K. Q. Weinberger, "Identifying
       Mislabeled Data using the Area Under the Margin Ranking",
       NeurIPS 2020.

    Examples
    --------
    Sample 0 has margin ``log(0.8 / 0.2) = log 4`` (easy), sample 1 margin
    ``log(0.2 / 0.8) = -log 4`` (hard), so after negation:

    >>> import numpy as np
    >>> from advprune.scores import aum
    >>> probas = np.array([[[0.8, 0.2], [0.8, 0.2]]])
    >>> y = np.array([0, 1])
    >>> print(np.round(aum(probas, y), 4))
    [-1.3863  1.3863]
    """
    probas = _check_probas(probas)
    n_epochs, n_samples, n_classes = probas.shape
    _check_min_epochs(n_epochs, 1, "aum", "probas")
    y = _check_labels(y, n_samples, n_classes)
    rows = np.arange(n_samples)
    total = np.zeros(n_samples)
    for epoch in range(n_epochs):
        log_p = np.log(np.maximum(probas[epoch].astype(np.float64), _EPS))
        true_class = log_p[rows, y]
        log_p[rows, y] = -np.inf
        total += true_class - log_p.max(axis=1)
    return -(total / n_epochs)


def tdds(probas, window=10, decay=0.9):
    """Temporal Dual-Depth Score (TDDS) of each sample.

    TDDS [1]_ scores a sample by how much its contribution to training
    varies over time. With ``p_t`` the predicted distribution of a sample at
    epoch ``t`` (``t = 0, ..., K - 1``, ``K = n_epochs``), ``J = window``
    and ``beta = decay``:

    1. Contribution at each step (first depth), a KL-divergence proxy
       between consecutive predictions:
       ``d_t = sum_c |p_{t+1,c} * (log(p_{t+1,c} + 1e-8) -
       log(p_{t,c} + 1e-8))|`` for ``t = 0, ..., K - 2``.
    2. Variability within each window of ``J`` epochs (second depth): for
       window start ``k = 0, ..., K - J`` the window holds the ``J - 1``
       values ``d_k, ..., d_{k+J-2}`` with mean ``m_k``, and
       ``R_k = sqrt(sum_{t=k}^{k+J-2} (d_t - m_k) ** 2)``.
    3. Exponential moving average over windows, latest weighted most:
       ``score = sum_k beta * (1 - beta) ** (K - J - k) * R_k``, i.e. the
       recursion ``S_k = beta * R_k + (1 - beta) * S_{k-1}`` from
       ``S_{-1} = 0``, evaluated at the last window.

    This is the computation of the authors' reference implementation
    (``importance_evaluation.py`` in
    https://github.com/zhangxin-xd/Dataset-Pruning-TDDS), applied to the
    recorded probabilities (that code applies a softmax to stored logits
    first). It needs only the predictions, not the labels.

    **Higher score = more important = kept**, as in [1]_, whose code keeps
    the samples with the largest TDDS: samples whose contribution keeps
    changing are informative, and those whose contribution is steady are
    pruned.

    Parameters
    ----------
    probas : array-like of shape (n_epochs, n_samples, n_classes)
        Predicted class probabilities after every epoch, in ``[0, 1]``, at
        least ``window`` epochs and two classes. Float16 memmaps are fine;
        read one epoch at a time and not modified.
    window : int, default=10
        Window length ``J`` in epochs, at least 3 (a window of ``J`` epochs
        holds ``J - 1`` contributions, and the deviation of a single value
        is always 0).
    decay : float, default=0.9
        Smoothing factor ``beta`` of the moving average, in ``(0, 1]``. The
        last window gets weight ``beta``, the one before ``beta * (1 -
        beta)``, and so on; ``1`` uses the last window only.

    Returns
    -------
    scores : ndarray of shape (n_samples,), dtype=float64
        Non-negative TDDS; higher = more important = kept.

    Raises
    ------
    TypeError
        If ``probas`` is not real-valued, ``window`` not an integer or
        ``decay`` not a real number.
    ValueError
        If ``probas`` is not 3-D, has fewer than two classes or fewer than
        ``window`` epochs, holds NaN/inf or values outside ``[0, 1]``, if
        ``window < 3``, or if ``decay`` is outside ``(0, 1]``.

    Notes
    -----
    Two details follow the reference implementation rather than a textbook
    formula. The absolute value is taken of each class term, so ``d_t`` is
    an upper bound of ``KL(p_{t+1} || p_t)`` that is never negative and is 0
    only when the two predictions agree. The deviation ``R_k`` is the
    Euclidean norm of the deviations from the window mean, not divided by
    the number of values; it is a constant multiple (``sqrt(J - 1)``) of
    their population standard deviation, which does not change the ranking.

    References
    ----------
    .. [1] X. Zhang, J. Du, Y. Li, W. Xie, J. T. Zhou, "Spanning Training
       Progress: Temporal Dual-Depth Scoring (TDDS) for Enhanced Dataset
       Pruning", CVPR 2024, pp. 26223-26232.

    Examples
    --------
    Sample 0 changes once, from ``(0.8, 0.2)`` to ``(0.5, 0.5)``: ``d_0 =
    0.5 |log(0.5/0.8)| + 0.5 |log(0.5/0.2)| = log 2`` and ``d_1 = 0``, so
    the single window of three epochs has ``R_0 = log(2) / sqrt(2)`` and the
    score is ``0.9 * R_0``. Sample 1 never changes:

    >>> import numpy as np
    >>> from advprune.scores import tdds
    >>> probas = np.array([[[0.8, 0.2], [0.7, 0.3]],
    ...                    [[0.5, 0.5], [0.7, 0.3]],
    ...                    [[0.5, 0.5], [0.7, 0.3]]])
    >>> print(np.round(tdds(probas, window=3), 4))
    [0.4411 0.    ]
    """
    probas = _check_probas(probas)
    window = _check_int(window, "window", low=3)
    decay = _check_decay(decay)
    n_epochs, n_samples, _ = probas.shape
    if n_epochs < window:
        raise ValueError(
            f"tdds needs at least window={window} epochs; probas has "
            f"{n_epochs} (probas must be of shape (n_epochs, n_samples, "
            "n_classes))."
        )
    contributions = np.empty((n_epochs - 1, n_samples))
    log_previous = np.log(probas[0].astype(np.float64) + _TDDS_EPS)
    for epoch in range(1, n_epochs):
        current = probas[epoch].astype(np.float64)
        log_current = np.log(current + _TDDS_EPS)
        change = np.abs(current * (log_current - log_previous))
        contributions[epoch - 1] = change.sum(axis=1)
        log_previous = log_current
    scores = np.zeros(n_samples)
    for start in range(n_epochs - window + 1):
        block = contributions[start : start + window - 1]
        deviation = np.sqrt(np.square(block - block.mean(axis=0)).sum(axis=0))
        scores = decay * deviation + (1.0 - decay) * scores
    return scores


SCORES = {
    "dynamic_uncertainty": dynamic_uncertainty,
    "frequency": frequency_score,
    "forgetting": forgetting_events,
    "el2n": el2n,
    "aum": aum,
    "tdds": tdds,
    "mean_loss": mean_loss,
}
"""dict: Score name -> function, for every score accepted by name.

Functions of :func:`requires_probas` names take ``probas`` of shape
(n_epochs, n_samples, n_classes) (and ``y`` where :func:`requires_labels`
says so); the others take ``P`` of shape (n_epochs, n_samples). All return
float64 scores of shape (n_samples,) where higher = more important = kept.
"""

_PROBAS_SCORES = frozenset({"forgetting", "el2n", "aum", "tdds"})
_LABEL_SCORES = frozenset({"forgetting", "el2n", "aum"})


def requires_probas(name):
    """Whether the named score needs the full class probabilities.

    Parameters
    ----------
    name : str
        A key of :data:`SCORES`.

    Returns
    -------
    bool
        True if the score's function takes ``probas`` of shape (n_epochs,
        n_samples, n_classes); False if it takes the true-class
        probabilities ``P`` of shape (n_epochs, n_samples).

    Raises
    ------
    ValueError
        If ``name`` is not a key of :data:`SCORES`.

    See Also
    --------
    requires_labels : Whether the score also takes the labels ``y``.

    Examples
    --------
    >>> from advprune.scores import requires_probas
    >>> requires_probas("dynamic_uncertainty")
    False
    >>> requires_probas("aum")
    True
    """
    return _check_name(name) in _PROBAS_SCORES


def requires_labels(name):
    """Whether the named score takes the class labels ``y`` as second argument.

    Parameters
    ----------
    name : str
        A key of :data:`SCORES`.

    Returns
    -------
    bool
        True if the score is called as ``SCORES[name](probas, y)``; False if
        it is called with the probabilities alone (``P`` or, for ``"tdds"``,
        ``probas``).

    Raises
    ------
    ValueError
        If ``name`` is not a key of :data:`SCORES`.

    See Also
    --------
    requires_probas : Whether the score takes ``probas`` rather than ``P``.

    Examples
    --------
    >>> from advprune.scores import requires_labels
    >>> requires_labels("el2n")
    True
    >>> requires_labels("tdds")
    False
    """
    return _check_name(name) in _LABEL_SCORES


def compute_score(importance, dynamics, y=None, *, signal="adversarial", **params):
    """Importance scores of the recorded samples, from their training dynamics.

    Stage 3 of the method: one dispatch from a score's name, or a callable, to
    its function, feeding it the series it needs from a recording.

    Parameters
    ----------
    importance : str or callable
        A name of :data:`SCORES`, or ``f(P) -> scores`` taking the
        (n_epochs, n_samples) true-class probabilities and returning one score
        per sample, higher = more important.
    dynamics : advprune.training.Dynamics
        The recording (anything with the attributes ``adversarial``,
        ``clean``, ``adversarial_probas`` and ``clean_probas``): true-class
        probabilities of shape (n_epochs, n_samples) and, for the scores of
        :func:`requires_probas`, class probabilities of shape (n_epochs,
        n_samples, n_classes).
    y : array-like of shape (n_samples,), default=None
        Integer class labels in ``[0, n_classes)``, for the scores of
        :func:`requires_labels`.
    signal : {"adversarial", "clean"}, default="adversarial"
        Which recorded series the score is computed from.
    **params
        Keyword arguments of the named score, e.g. ``window=5``.

    Returns
    -------
    scores : ndarray of shape (n_samples,), dtype=float64
        Finite scores; higher = more important = kept.

    Raises
    ------
    ValueError
        If the recording lacks the series the score needs, or a callable
        returns anything but one finite value per sample.

    Examples
    --------
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> from advprune.scores import compute_score
    >>> P = np.array([[0.1, 0.9], [0.9, 0.9], [0.1, 0.9], [0.9, 0.9]])
    >>> recording = SimpleNamespace(adversarial=P, clean=None,
    ...                             adversarial_probas=None, clean_probas=None)
    >>> print(np.round(compute_score("dynamic_uncertainty", recording, window=2), 4))
    [0.5657 0.    ]
    >>> compute_score(lambda P: P.mean(axis=0), recording).tolist()
    [0.5, 0.9]
    """
    if signal not in ("adversarial", "clean"):
        raise ValueError(f"signal must be 'adversarial' or 'clean'; got {signal!r}.")
    name = "the callable" if callable(importance) else _check_name(importance)
    probas_needed = not callable(importance) and requires_probas(importance)
    series = getattr(dynamics, f"{signal}_probas" if probas_needed else signal)
    if series is None:
        kind = "class probabilities" if probas_needed else "series"
        raise ValueError(
            f"score {name!r} needs the {signal} {kind}, which this recording "
            f"lacks (record='epoch' records the clean series; record_probas=True "
            f"the class probabilities)."
        )
    if callable(importance):
        scores = importance(series)
    elif requires_labels(importance):
        scores = SCORES[importance](series, y, **params)
    else:
        scores = SCORES[importance](series, **params)
    scores = np.asarray(scores, dtype=np.float64)
    n_samples = np.shape(series)[1]
    if scores.shape != (n_samples,) or not np.isfinite(scores).all():
        raise ValueError(
            f"score must return one finite value per recorded sample, shape "
            f"({n_samples},); got shape {scores.shape}."
        )
    return scores


def _check_name(name):
    if not isinstance(name, str) or name not in SCORES:
        raise ValueError(f"Unknown score {name!r}; expected one of {sorted(SCORES)}.")
    return name


def _check_real_array(values, name, ndim, shape):
    array = np.asarray(values)
    if not (
        np.issubdtype(array.dtype, np.floating)
        or np.issubdtype(array.dtype, np.integer)
    ):
        raise TypeError(
            f"{name} must hold real numbers (probabilities), got dtype {array.dtype}."
        )
    if array.ndim != ndim:
        raise ValueError(
            f"{name} must be {ndim}-D of shape {shape}, got shape {array.shape}."
        )
    return array


def _check_probability_values(array, name):
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite; found NaN or infinity.")
    if array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(
            f"{name} must hold probabilities in [0, 1]; found values in "
            f"[{array.min()}, {array.max()}]."
        )


def _check_series(P):
    P = _check_real_array(P, "P", 2, "(n_epochs, n_samples)")
    P = P.astype(np.float64, copy=False)
    _check_probability_values(P, "P")
    return P


def _check_probas(probas):
    probas = _check_real_array(probas, "probas", 3, "(n_epochs, n_samples, n_classes)")
    if probas.shape[2] < 2:
        raise ValueError(
            f"probas must have at least 2 classes (last axis), got shape "
            f"{probas.shape}."
        )
    # Epoch by epoch, so that a memory-mapped tensor is never loaded whole.
    for epoch in range(probas.shape[0]):
        _check_probability_values(probas[epoch], f"probas (epoch {epoch})")
    return probas


def _check_labels(y, n_samples, n_classes):
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}.")
    if y.shape != (n_samples,):
        raise ValueError(
            f"y must be of shape (n_samples,) = ({n_samples},) to match probas, "
            f"got shape {y.shape}."
        )
    if n_samples and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"y must hold labels in [0, n_classes) = [0, {n_classes}); found "
            f"labels in [{y.min()}, {y.max()}]."
        )
    return y.astype(np.intp, copy=False)


def _check_min_epochs(n_epochs, minimum, score, name):
    if n_epochs < minimum:
        raise ValueError(
            f"{score} needs at least {minimum} epoch(s); {name} has {n_epochs} "
            "along its first axis (n_epochs)."
        )


def _check_int(value, name, low, high=None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}.")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bounds}, got {value}.")
    return int(value)


def _check_decay(decay):
    if isinstance(decay, (bool, np.bool_)) or not isinstance(decay, numbers.Real):
        raise TypeError(f"decay must be a real number in (0, 1], got {decay!r}.")
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1], got {decay}.")
    return float(decay)
