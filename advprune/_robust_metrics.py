"""Robust accuracy of adversarially trained classifiers, and a scorer for it.

Public through :mod:`advprune.metrics`. PyTorch and the estimators are imported
inside the functions, so that importing :mod:`advprune.metrics` does not import
torch.
"""

from __future__ import annotations

import inspect
from numbers import Integral, Real

import numpy as np
from sklearn.pipeline import Pipeline as _SklearnPipeline
from sklearn.utils.validation import check_is_fitted

from ._progress import progress_bar
from ._validation import check_bounds

__all__ = ["make_robust_scorer", "robust_accuracy"]

_NORMS = ("linf", "l2")
_LOSSES = ("ce", "cw")
_ATTACKS = ("pgd", "autoattack")

# AutoAttack's standard version targets the 9 classes after the predicted
# one; its targeted DLR loss reads the 3rd and 4th largest logits.
_AUTOATTACK_TARGETS = 9
_AUTOATTACK_MIN_CLASSES = 4


def _is_int(value):
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, Real) and not isinstance(value, bool)


def _import_autoattack():
    """AutoAttack's class from the optional ``pyautoattack`` package."""
    try:
        from pyautoattack import AutoAttack
    except ImportError as exc:
        raise ImportError(
            "attack='autoattack' needs the official AutoAttack implementation, the "
            "'autoattack' extra of advprune: pip install -e \".[autoattack]\" in a "
            "checkout (or pip install pyautoattack)."
        ) from exc
    return AutoAttack


def _check_options(
    eps, norm, steps, step_size, losses, restarts, batch_size, attack="pgd"
):
    """Validate the attack options; return ``losses`` as a tuple."""
    if not isinstance(attack, str) or attack not in _ATTACKS:
        raise ValueError(f"attack must be one of {_ATTACKS}; got {attack!r}.")
    if attack == "autoattack":
        _import_autoattack()
    if eps is not None and not (_is_real(eps) and np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be None or a finite float >= 0; got {eps!r}.")
    if norm is not None and norm not in _NORMS:
        raise ValueError(f"norm must be None or one of {_NORMS}; got {norm!r}.")
    for name, value in (
        ("steps", steps),
        ("restarts", restarts),
        ("batch_size", batch_size),
    ):
        if not _is_int(value) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}.")
    if step_size is not None and not (
        _is_real(step_size) and np.isfinite(step_size) and step_size > 0
    ):
        raise ValueError(
            f"step_size must be None or a finite float > 0; got {step_size!r}."
        )
    losses = (losses,) if isinstance(losses, str) or callable(losses) else losses
    try:
        losses = tuple(losses)
    except TypeError:
        raise ValueError(
            f"losses must be a sequence of {_LOSSES} or callables; got {losses!r}."
        ) from None
    if not losses or not all(
        callable(loss) or (isinstance(loss, str) and loss in _LOSSES) for loss in losses
    ):
        raise ValueError(
            f"losses must be a non-empty sequence of {_LOSSES} or callables "
            f"(logits, y) -> per-sample loss; got {losses!r}."
        )
    return losses


def _attacked_classifier(estimator):
    """The fitted ``AdversarialClassifier`` that the attack differentiates.

    A pipeline is accepted when every step before its final classifier is
    skipped at predict time (a resampler such as ``AdversarialPruner``, or
    ``"passthrough"``), so that the classifier sees the pipeline's input.
    """
    from .classifier import AdversarialClassifier

    if isinstance(estimator, _SklearnPipeline):
        for name, step in estimator.steps[:-1]:
            if step is None or step == "passthrough" or hasattr(step, "fit_resample"):
                continue
            raise ValueError(
                f"robust_accuracy attacks the classifier's input, so every step "
                f"before the final AdversarialClassifier must be skipped at "
                f"predict time (a resampler such as AdversarialPruner, or "
                f"'passthrough'); step {name!r} ({type(step).__name__}) "
                f"transforms X. Put the transformation inside the torch model, "
                f"or attack the transformed data with the classifier step itself."
            )
        estimator = estimator.steps[-1][1]
    if not isinstance(estimator, AdversarialClassifier):
        raise TypeError(
            "estimator must be a fitted AdversarialClassifier or a Pipeline ending "
            f"in one; got {type(estimator).__name__}."
        )
    check_is_fitted(estimator)
    return estimator


def robust_accuracy(
    estimator,
    X,
    y,
    *,
    eps=None,
    norm=None,
    steps=50,
    step_size=None,
    losses=("ce", "cw"),
    restarts=1,
    batch_size=256,
    random_state=None,
    attack="pgd",
    verbose=False,
):
    """Accuracy under attack: PGD (worst case per sample over losses and
    restarts) or AutoAttack.

    A sample counts as robust only if the clean prediction is right and every
    attack (each loss in ``losses``, each of ``restarts`` random starts, or
    each attack of AutoAttack) fails to change it. Attacks run on the model in
    eval mode, with the input box (``bounds``) the classifier was trained
    with. Samples already broken are not attacked again, which changes the
    cost, not the result.

    Parameters
    ----------
    estimator : AdversarialClassifier or Pipeline
        A fitted :class:`~advprune.AdversarialClassifier`, or a fitted
        :class:`advprune.pipeline.Pipeline` whose final step is one and whose
        other steps are skipped at predict time (e.g. an
        ``AdversarialPruner``). A step that transforms ``X`` raises
        ``ValueError``: the attack must see the model's input.
    X : array-like of shape (n_samples, n_features) or (n_samples, \
\\*sample_shape)
        Clean inputs, in the shape the classifier was fitted on or flattened.
    y : array-like of shape (n_samples,)
        True labels, from the classifier's ``classes_``. A label the
        classifier does not know counts as a misclassified sample.
    eps : float or None, default=None
        Attack budget; ``None`` uses the classifier's training ``eps``.
        ``eps=0`` gives clean accuracy.
    norm : {"linf", "l2"} or None, default=None
        ``None`` uses the classifier's training ``norm``.
    steps : int, default=50
        PGD steps per attack.
    step_size : float or None, default=None
        ``None`` uses ``2.5 * eps / steps``.
    losses : sequence of {"ce", "cw"} or callable, default=("ce", "cw")
        Losses maximised by the attacks: cross-entropy and the Carlini-Wagner
        margin, or callables ``(logits, y) -> per-sample loss``.
    restarts : int, default=1
        Random starts per loss.
    batch_size : int, default=256
        Samples attacked at a time.
    random_state : int, RandomState or None, default=None
        Seeds the random starts; an integer makes the result reproducible.
    attack : {"pgd", "autoattack"}, default="pgd"
        ``"pgd"``: the PGD attacks above, fast. ``"autoattack"``: the standard
        version of AutoAttack (Croce and Hein, 2020: APGD-CE, APGD-T, FAB-T and
        Square with 5,000 queries), the evaluation robustness papers and
        RobustBench report, through the official implementation (the
        ``autoattack`` extra, package ``pyautoattack``). It fixes its own
        settings, so ``steps``, ``step_size``, ``losses`` and ``restarts`` do
        not apply; it needs images (its Square attack perturbs square
        patches), inputs in [0, 1] (``bounds=(0, 1)``) and at least 4
        classes (with fewer than 10 its targeted attacks target every other
        class). Several times slower than PGD-50 and never above it in
        expectation: a sample robust to AutoAttack has survived a stronger
        attack.
    verbose : bool, default=False
        A progress bar over the samples.

    Returns
    -------
    accuracy : float
        Fraction of samples in [0, 1] that are robust; at most the clean
        accuracy.

    Raises
    ------
    ValueError
        If an option is invalid, ``X`` does not match the classifier, or a
        pipeline step transforms ``X``; for ``attack="autoattack"``, if the
        classifier is not an image classifier with at least 4 classes trained
        in ``bounds=(0, 1)``.
    TypeError
        If ``estimator`` is not an ``AdversarialClassifier`` or a pipeline
        ending in one.
    ImportError
        If ``attack="autoattack"`` and the ``autoattack`` extra is not
        installed.

    See Also
    --------
    make_robust_scorer : The same as a ``scoring=`` callable for model selection.

    Examples
    --------
    >>> import numpy as np
    >>> from advprune import AdversarialClassifier
    >>> from advprune.metrics import robust_accuracy
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(200, 2)).astype("float32")
    >>> y = (X[:, 0] > 0.5).astype(int)
    >>> clf = AdversarialClassifier(eps=0.05, epochs=5, device="cpu",
    ...                             random_state=0).fit(X, y)
    >>> robust = robust_accuracy(clf, X, y, steps=10, random_state=0)
    >>> bool(robust <= clf.score(X, y))
    True
    >>> robust_accuracy(clf, X, y, eps=0.0, steps=1) == clf.score(X, y)
    True
    """
    losses = _check_options(
        eps, norm, steps, step_size, losses, restarts, batch_size, attack
    )
    clf = _attacked_classifier(estimator)

    import torch

    from .training import torch_generator

    X = clf._validate_X(X, reset=False)
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(
            f"y must be 1-D with one label per row of X ({len(X)}); got shape "
            f"{y.shape}."
        )
    index = {label: k for k, label in enumerate(clf.classes_.tolist())}
    targets = np.array([index.get(label, -1) for label in y.tolist()], dtype=np.int64)
    eps = clf.eps if eps is None else eps
    norm = clf.norm if norm is None else norm
    bounds = check_bounds(clf.bounds)
    model, device = clf.module_.eval(), clf.device_
    # PGD's random starts are drawn on the device that attacks; AutoAttack
    # takes one seed, drawn on the CPU.
    generator = torch_generator(
        random_state, device=device if attack == "pgd" else "cpu"
    )
    if attack == "pgd":
        survive = _pgd_survivors(
            model, eps, norm, steps, step_size, losses, restarts, bounds, generator
        )
        name = f"PGD-{steps}"
    else:
        survive = _autoattack_survivors(
            model, eps, norm, len(clf.classes_), X.shape, bounds, generator, device
        )
        name = "AutoAttack"

    robust = np.zeros(len(X), dtype=bool)
    with progress_bar(
        total=len(X), desc=f"robust accuracy ({name})", unit="sample", verbose=verbose
    ) as bar:
        for start in range(0, len(X), batch_size):
            # A copy: torch refuses to wrap read-only (memmapped) arrays silently.
            x = torch.from_numpy(np.array(X[start : start + batch_size], np.float32))
            x = x.to(device)
            target = targets[start : start + batch_size]
            with torch.no_grad():
                alive = model(x).argmax(1).cpu().numpy() == target
            rows = np.flatnonzero(alive)
            if rows.size and eps > 0:
                x_rows = x[torch.from_numpy(rows).to(device)]
                y_rows = torch.from_numpy(target[rows]).to(device)
                alive[rows] = survive(x_rows, y_rows)
            robust[start : start + batch_size] = alive
            bar.update(len(x))
    return float(robust.mean())


def _pgd_survivors(
    model, eps, norm, steps, step_size, losses, restarts, bounds, generator
):
    """``survive(x, y) -> bool array``: which correctly classified samples
    every PGD attack (each loss, each restart) fails to break."""
    import torch

    from .attacks import pgd

    def survive(x, y):
        alive = np.ones(len(x), dtype=bool)
        for _ in range(restarts):
            for loss in losses:
                rows = np.flatnonzero(alive)
                if not rows.size:
                    return alive
                index = torch.from_numpy(rows).to(x.device)
                x_adv = pgd(
                    model,
                    x[index],
                    y[index],
                    eps,
                    norm=norm,
                    steps=steps,
                    step_size=step_size,
                    loss=loss,
                    random_start=True,
                    bounds=bounds,
                    generator=generator,
                )
                with torch.no_grad():
                    held = (model(x_adv).argmax(1) == y[index]).cpu().numpy()
                alive[rows[~held]] = False
        return alive

    return survive


def _autoattack_survivors(
    model, eps, norm, n_classes, shape, bounds, generator, device
):
    """``survive(x, y) -> bool array`` through AutoAttack's standard version,
    after checking that it applies to this classifier."""
    if len(shape) != 4:
        raise ValueError(
            "attack='autoattack' needs image inputs (n_samples, channels, height, "
            f"width): its Square attack perturbs square patches; X has shape {shape}."
        )
    if bounds != (0.0, 1.0):
        raise ValueError(
            "attack='autoattack' keeps inputs in [0, 1], AutoAttack's fixed box; "
            f"the classifier was trained with bounds={bounds}."
        )
    if n_classes < _AUTOATTACK_MIN_CLASSES:
        raise ValueError(
            f"attack='autoattack' needs at least {_AUTOATTACK_MIN_CLASSES} classes "
            f"(its targeted DLR loss compares the 3rd and 4th largest logits); the "
            f"classifier has {n_classes}."
        )
    import torch

    AutoAttack = _import_autoattack()
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    adversary = AutoAttack(
        model,
        eps=eps,
        norm={"linf": "Linf", "l2": "L2"}[norm],
        seed=seed,
        device=device,
        version="standard",
    )
    adversary.verbose = False
    # Fewer than 10 classes: target every other class, as many as exist.
    targets = min(_AUTOATTACK_TARGETS, n_classes - 1)
    adversary.apgd_targeted.n_target_classes = targets
    adversary.fab.n_target_classes = targets
    # AutoAttack reseeds torch's global generators; the caller's stay as they were.
    devices = [device] if device.type == "cuda" else []

    def survive(x, y):
        with torch.random.fork_rng(devices=devices):
            _, predicted = adversary.run_standard_evaluation(x, y, batch_size=len(x))
        return (predicted == y).cpu().numpy()

    return survive


class _RobustScorer:
    """``scorer(estimator, X, y) -> robust accuracy``, picklable for joblib."""

    def __init__(self, kwargs):
        self._kwargs = kwargs

    def __call__(self, estimator, X, y):
        return robust_accuracy(estimator, X, y, **self._kwargs)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._kwargs.items())
        return f"make_robust_scorer({args})"


def make_robust_scorer(**kwargs):
    """Make a ``scoring=`` callable that returns :func:`robust_accuracy`.

    Parameters
    ----------
    **kwargs
        Keyword arguments of :func:`robust_accuracy` (``eps``, ``norm``,
        ``steps``, ``step_size``, ``losses``, ``restarts``, ``batch_size``,
        ``random_state``, ``attack``, ``verbose``), checked now rather than at
        the first call. ``attack="autoattack"`` scores by AutoAttack's
        standard version.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y) -> float``, higher is better, accepted as
        ``scoring=`` by :class:`~sklearn.model_selection.GridSearchCV` and
        :func:`~sklearn.model_selection.cross_val_score`.

    Raises
    ------
    TypeError
        If a keyword is not a parameter of :func:`robust_accuracy`.
    ValueError
        If a value is invalid.
    ImportError
        If ``attack="autoattack"`` and the ``autoattack`` extra is not
        installed.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import cross_val_score
    >>> from advprune import AdversarialClassifier
    >>> from advprune.metrics import make_robust_scorer
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(150, 2)).astype("float32")
    >>> y = (X[:, 0] > 0.5).astype(int)
    >>> scorer = make_robust_scorer(steps=5, random_state=0)
    >>> scorer
    make_robust_scorer(steps=5, random_state=0)
    >>> clf = AdversarialClassifier(eps=0.05, epochs=3, device="cpu", random_state=0)
    >>> cross_val_score(clf, X, y, cv=3, scoring=scorer).shape
    (3,)
    """
    parameters = inspect.signature(robust_accuracy).parameters
    keywords = [name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(kwargs) - set(keywords))
    if unknown:
        raise TypeError(
            f"make_robust_scorer got unknown arguments {unknown}; robust_accuracy "
            f"accepts {keywords}."
        )
    options = {
        name: kwargs.get(name, parameters[name].default)
        for name in (
            "eps",
            "norm",
            "steps",
            "step_size",
            "losses",
            "restarts",
            "batch_size",
            "attack",
        )
    }
    _check_options(**options)
    return _RobustScorer(dict(kwargs))
