"""Metrics: fidelity of extrapolated importance scores, and robust accuracy.

:func:`robust_accuracy` and :func:`make_robust_scorer` measure a classifier
under PGD attacks (CE and CW losses, restarts, worst case per sample) or, with
``attack="autoattack"``, under AutoAttack's standard version.

Extrapolation is only worth trusting with a long adversarial training run if the
extrapolated scores rank samples like the direct ones would. The direct scores of the
unscored pool are never available (computing them is what extrapolation avoids), so
:func:`extrapolation_report` estimates fidelity by cross-validation on the scored
subset alone, and :data:`spearman_scorer` lets ``GridSearchCV`` choose the
extrapolator's parameters the same way.

All scores follow the package convention: higher = more important = kept; pruning
removes the lowest-scored fraction.
"""

# SPDX-License-Identifier: BSD-3-Clause

from numbers import Integral, Real

import numpy as np
from scipy import stats
from sklearn.base import clone, is_regressor
from sklearn.metrics import make_scorer
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.utils import Bunch, check_consistent_length
from sklearn.utils._param_validation import HasMethods, Interval, validate_params
from sklearn.utils.validation import check_array

from ._robust_metrics import make_robust_scorer, robust_accuracy

__all__ = [
    "extrapolation_report",
    "lowest_fraction_overlap",
    "make_robust_scorer",
    "robust_accuracy",
    "spearman_score",
    "spearman_scorer",
]


def _check_score_pair(y_true, y_pred):
    y_true = check_array(y_true, ensure_2d=False, dtype=np.float64, input_name="y_true")
    y_pred = check_array(y_pred, ensure_2d=False, dtype=np.float64, input_name="y_pred")
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        if values.ndim != 1:
            raise ValueError(
                f"{name} must be 1-D (one score per sample), got shape {values.shape}."
            )
    check_consistent_length(y_true, y_pred)
    return y_true, y_pred


@validate_params(
    {"y_true": ["array-like"], "y_pred": ["array-like"]},
    prefer_skip_nested_validation=True,
)
def spearman_score(y_true, y_pred):
    """Spearman rank correlation between direct and predicted importance scores.

    Pruning only uses the order of the scores, so the rank correlation is the measure
    of an extrapolation that matters; it ignores any monotone distortion of the
    predictions (for example their over-smoothing).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Directly computed importance scores (higher = more important = kept).

    y_pred : array-like of shape (n_samples,)
        Predicted (extrapolated) scores of the same samples.

    Returns
    -------
    rho : float
        Spearman's rho in [-1, 1], ties ranked by their mean rank; NaN when either
        input is constant, since no ranking is defined then.

    See Also
    --------
    spearman_scorer : The same as a scorer for ``GridSearchCV(scoring=...)``.

    Examples
    --------
    >>> from advprune.metrics import spearman_score
    >>> spearman_score([0.1, 0.5, 0.3, 0.9], [1.0, 3.0, 2.0, 4.0])
    1.0
    >>> spearman_score([0.1, 0.5, 0.3, 0.9], [4.0, 2.0, 3.0, 1.0])
    -1.0
    """
    y_true, y_pred = _check_score_pair(y_true, y_pred)
    if np.ptp(y_true) == 0.0 or np.ptp(y_pred) == 0.0:
        return float("nan")
    return float(stats.spearmanr(y_true, y_pred).statistic)


spearman_scorer = make_scorer(spearman_score)
"""Scorer returning :func:`spearman_score`; greater is better.

Pass it as ``scoring=spearman_scorer`` to ``GridSearchCV`` or ``cross_val_score`` to
select an extrapolator by how well it ranks held-out scored samples.

Examples
--------
>>> import numpy as np
>>> from sklearn.model_selection import GridSearchCV
>>> from advprune import ImportanceExtrapolator
>>> from advprune.metrics import spearman_scorer
>>> rng = np.random.default_rng(0)
>>> E = rng.normal(size=(600, 4))
>>> s = E[:, 0] + rng.normal(size=600)
>>> search = GridSearchCV(
...     ImportanceExtrapolator(), {"n_neighbors": [1, 12, 48]},
...     scoring=spearman_scorer, cv=3,
... ).fit(E, s)
>>> search.best_params_["n_neighbors"] > 1
True
"""


@validate_params(
    {
        "y_true": ["array-like"],
        "y_pred": ["array-like"],
        "fraction": [Interval(Real, 0.0, 1.0, closed="neither")],
    },
    prefer_skip_nested_validation=True,
)
def lowest_fraction_overlap(y_true, y_pred, fraction=0.5):
    """Share of the truly lowest-scored samples that the predictions also rank lowest.

    With ``n_low = floor(fraction * n_samples)``, the samples pruned at prune ratio
    `fraction` by the direct scores are the ``n_low`` lowest of `y_true` (those
    removed, since higher = more important = kept). The overlap is the share of
    them that are also among the ``n_low`` lowest of `y_pred`: 1 means the
    predictions prune exactly the same samples, and a random ranking gets
    ``n_low / n_samples`` on average. Ties are broken by position (stable sort), as
    a pruning rule would.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Directly computed importance scores.

    y_pred : array-like of shape (n_samples,)
        Predicted scores of the same samples.

    fraction : float, default=0.5
        Fraction of samples removed, in (0, 1).

    Returns
    -------
    overlap : float
        In [0, 1].

    Examples
    --------
    >>> from advprune.metrics import lowest_fraction_overlap
    >>> y_true = [0.1, 0.2, 0.3, 0.4]
    >>> lowest_fraction_overlap(y_true, [0.1, 0.3, 0.2, 0.4], fraction=0.5)
    0.5
    >>> lowest_fraction_overlap(y_true, [5.0, 6.0, 7.0, 8.0], fraction=0.5)
    1.0
    """
    y_true, y_pred = _check_score_pair(y_true, y_pred)
    n_low = int(np.floor(fraction * y_true.shape[0]))
    if n_low == 0:
        raise ValueError(
            f"fraction={fraction} of {y_true.shape[0]} samples selects no sample; "
            "pass a larger fraction or more samples."
        )
    true_low = np.argsort(y_true, kind="stable")[:n_low]
    pred_low = np.argsort(y_pred, kind="stable")[:n_low]
    return np.intersect1d(true_low, pred_low).shape[0] / n_low


@validate_params(
    {
        "extrapolator": [HasMethods(["fit", "predict"])],
        "E_scored": ["array-like"],
        "s_scored": ["array-like"],
        "cv": [Interval(Integral, 2, None, closed="left"), "cv_object"],
        "prune_fraction": [Interval(Real, 0.0, 1.0, closed="neither")],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
    },
    prefer_skip_nested_validation=False,
)
def extrapolation_report(
    extrapolator,
    E_scored,
    s_scored,
    cv=5,
    prune_fraction=0.5,
    random_state=None,
    n_jobs=None,
):
    """Estimate extrapolation fidelity by cross-validation on the scored subset.

    The direct scores of the unscored pool are unknown, so the extrapolator is
    judged where scores are known: each fold of the scored subset is predicted by
    the extrapolator fitted on the other folds (``cross_val_predict``), and the
    held-out predictions are compared with the direct scores.

    Two caveats when reading the numbers. Each fold is predicted from
    ``(cv - 1) / cv`` of the scored samples, so the estimate is slightly
    pessimistic for predictions made from all of them (``cv=10`` narrows the gap).
    And the reference is the score as computed on the subset: how well those
    scores agree with scores from a training run on the whole pool is a different
    question that only a full run can answer.

    Parameters
    ----------
    extrapolator : regressor
        Unfitted scikit-learn regressor mapping embeddings to scores, usually an
        :class:`~advprune.ImportanceExtrapolator`. It is cloned; the object passed
        is not fitted.

    E_scored : array-like of shape (n_scored, n_features)
        Embeddings of the directly scored samples.

    s_scored : array-like of shape (n_scored,)
        Their direct importance scores (higher = more important = kept).

    cv : int or cross-validation generator, default=5
        An int gives ``KFold(cv, shuffle=True, random_state=random_state)``;
        anything else is passed to ``cross_val_predict`` (each sample must be in
        exactly one test fold).

    prune_fraction : float, default=0.5
        Fraction of samples removed, in (0, 1), for the overlap of the
        lowest-scored (pruned) samples.

    random_state : int, RandomState instance or None, default=None
        Shuffling of the folds when `cv` is an int. Pass an int for a reproducible
        report.

    n_jobs : int, default=None
        Folds fitted and predicted in parallel by ``cross_val_predict``.

    Returns
    -------
    report : :class:`~sklearn.utils.Bunch`
        With keys

        - ``spearman`` : float, rank correlation of held-out predictions and direct
          scores (what pruning depends on);
        - ``pearson`` : float, linear correlation;
        - ``lowest_overlap`` : float, :func:`lowest_fraction_overlap` at
          `prune_fraction`;
        - ``lowest_overlap_chance`` : float, the expected overlap of a random
          ranking (``floor(prune_fraction * n) / n``);
        - ``predictions`` : ndarray of shape (n_scored,), the held-out predictions;
        - ``n_scored`` : int, the number of scored samples.

    See Also
    --------
    spearman_scorer : For choosing the extrapolator's parameters with
        ``GridSearchCV`` on the same data.

    Examples
    --------
    >>> import numpy as np
    >>> from advprune import ImportanceExtrapolator
    >>> from advprune.metrics import extrapolation_report
    >>> rng = np.random.default_rng(0)
    >>> E = rng.normal(size=(1000, 8))
    >>> s = E[:, 0] + 0.5 * rng.normal(size=1000)
    >>> report = extrapolation_report(ImportanceExtrapolator(), E, s, random_state=0)
    >>> sorted(k for k in report if k != "predictions")
    ['lowest_overlap', 'lowest_overlap_chance', 'n_scored', 'pearson', 'spearman']
    >>> bool(report.spearman > report.lowest_overlap_chance > 0)
    True
    """
    if not is_regressor(extrapolator):
        raise TypeError(
            "extrapolator must be a regressor (it predicts scores), got "
            f"{type(extrapolator).__name__}."
        )
    E_scored = check_array(
        E_scored, dtype=[np.float64, np.float32], input_name="E_scored"
    )
    s_scored = check_array(
        s_scored, ensure_2d=False, dtype=np.float64, input_name="s_scored"
    )
    if s_scored.ndim != 1:
        raise ValueError(
            f"s_scored must be 1-D (one score per sample), got shape {s_scored.shape}."
        )
    if E_scored.shape[0] != s_scored.shape[0]:
        raise ValueError(
            f"E_scored has {E_scored.shape[0]} rows but s_scored has "
            f"{s_scored.shape[0]} scores; they must describe the same samples."
        )
    if isinstance(cv, Integral):
        if cv > E_scored.shape[0]:
            raise ValueError(
                f"cv={cv} folds need at least {cv} scored samples, got "
                f"{E_scored.shape[0]}."
            )
        cv = KFold(n_splits=cv, shuffle=True, random_state=random_state)
    predictions = cross_val_predict(
        clone(extrapolator), E_scored, s_scored, cv=cv, n_jobs=n_jobs
    )
    if np.ptp(predictions) == 0.0:
        pearson = float("nan")
    else:
        pearson = float(stats.pearsonr(s_scored, predictions).statistic)
    n_low = int(np.floor(prune_fraction * s_scored.shape[0]))
    return Bunch(
        spearman=spearman_score(s_scored, predictions),
        pearson=pearson,
        lowest_overlap=lowest_fraction_overlap(
            s_scored, predictions, fraction=prune_fraction
        ),
        lowest_overlap_chance=n_low / s_scored.shape[0],
        predictions=predictions,
        n_scored=s_scored.shape[0],
    )
