"""Pipelines with steps that remove training rows: prune at fit time only.

A *resampler* is a step with a ``fit_resample(X, y) -> (X_kept, y_kept)``
method, such as :class:`advprune.AdversarialPruner`. In a :class:`Pipeline`
of this module a resampler acts while the pipeline is fitted (the later steps
are fitted on the rows it keeps, with their labels) and is skipped while it
predicts, scores or transforms, so that test data is never pruned. Used in
:class:`~sklearn.model_selection.GridSearchCV`, only the training folds are
pruned and every test fold is scored in full. The semantics are those of
imbalanced-learn's pipeline.

Why not ``sklearn.pipeline.Pipeline``: it fits an intermediate step with
``fit_transform(X, y)`` and hands the result to the next step together with
the *original* ``y``; when the step drops rows, ``X`` and ``y`` no longer
match. It rejects an intermediate step without ``transform`` (the pruner has
none: there is nothing to do to new data), and it applies every intermediate
step to the data it predicts on, where a pruning step must do nothing.

Why not ``imblearn.pipeline.Pipeline``: it dispatches on ``fit_transform`` /
``transform`` before ``fit_resample``, so a step that has both, as
``AdversarialPruner`` does (its ``fit_transform`` returns the kept rows of
``X`` for use in scripts), is treated as a transformer there and the labels
are not pruned with the rows. Here ``fit_resample`` always wins. Not depending
on imbalanced-learn also keeps the package's requirements small.

Other steps behave as in scikit-learn. Fit parameters are routed with the
``stepname__parameter`` convention; scikit-learn's metadata routing is not
used for fitting.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import contextmanager

from sklearn.base import clone
from sklearn.pipeline import Pipeline as _SklearnPipeline
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_memory

__all__ = ["Pipeline", "make_pipeline"]


def _is_passthrough(step):
    return step is None or (isinstance(step, str) and step == "passthrough")


def _is_resampler(step):
    return not _is_passthrough(step) and hasattr(step, "fit_resample")


def _final_estimator_has(attr):
    """``available_if`` check: the final step has ``attr``."""

    def check(self):
        # Raises the final step's own AttributeError when it lacks ``attr``.
        getattr(self._final_estimator, attr)
        return True

    return check


def _can_fit_transform(self):
    last = self._final_estimator
    return (
        _is_passthrough(last)
        or hasattr(last, "transform")
        or hasattr(last, "fit_transform")
    )


@contextmanager
def _print_elapsed_time(message):
    if message is None:
        yield
        return
    started = time.perf_counter()
    yield
    print(f"[Pipeline] {message}, total={time.perf_counter() - started:6.1f}s")


def _fit_transform_one(transformer, X, y, params, message):
    """Fit a transformer; return the transformed X, the unchanged y and the
    fitted transformer. Module-level so that ``joblib.Memory`` can cache it."""
    with _print_elapsed_time(message):
        if hasattr(transformer, "fit_transform"):
            Xt = transformer.fit_transform(X, y, **params)
        else:
            Xt = transformer.fit(X, y, **params).transform(X)
    return Xt, y, transformer


def _fit_resample_one(resampler, X, y, params, message):
    """Fit a resampler; return the kept rows of X and y and the fitted
    resampler. Module-level so that ``joblib.Memory`` can cache it."""
    with _print_elapsed_time(message):
        X_kept, y_kept = resampler.fit_resample(X, y, **params)
    return X_kept, y_kept, resampler


class Pipeline(_SklearnPipeline):
    """A scikit-learn pipeline whose steps may remove rows at fit time.

    Intermediate steps are transformers (``fit`` and ``transform``, as in
    scikit-learn) or resamplers (``fit_resample``, e.g.
    :class:`~advprune.AdversarialPruner`). While fitting, a resampler is called
    as ``fit_resample(X, y)`` and the following steps see only the rows it
    keeps, with their labels; a step with both ``fit_resample`` and
    ``fit_transform`` is treated as a resampler. While predicting, scoring or
    transforming, resamplers are skipped, so new data always reaches the final
    estimator with all of its rows.

    Everything else is :class:`sklearn.pipeline.Pipeline`: step access by name
    or index, ``set_params(stepname__param=...)`` for grid searches,
    ``"passthrough"`` steps and caching of fitted steps with ``memory``.

    Parameters
    ----------
    steps : list of (str, estimator) tuples
        The chained steps, in order. All but the last must be transformers,
        resamplers or ``"passthrough"``; the last needs only ``fit`` (or is
        ``"passthrough"``).
    memory : str, joblib.Memory or None, default=None
        Caches fitted intermediate steps (transformers and resamplers), keyed
        on the step's parameters and its input, as in scikit-learn; steps are
        then cloned before fitting, so inspect them through ``named_steps``.
        To reuse the pruner's scoring run across different ``prune_ratio``
        values, give ``AdversarialPruner`` its own ``memory``: this cache
        only helps when the whole step and its data are unchanged.
    verbose : bool, default=False
        Print the time each step takes to fit.

    Attributes
    ----------
    named_steps : Bunch
        The steps by name.
    classes_ : ndarray of shape (n_classes,)
        The final classifier's classes.
    n_features_in_ : int
        Number of features seen by the first step in ``fit``.

    See Also
    --------
    make_pipeline : Build a pipeline with automatic step names.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import GridSearchCV
    >>> from advprune import AdversarialClassifier, AdversarialPruner
    >>> from advprune.pipeline import Pipeline
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(120, 2)).astype("float32")
    >>> y = (X[:, 0] > 0.5).astype(int)
    >>> pipe = Pipeline([
    ...     ("prune", AdversarialPruner(importance="mean_loss", extrapolation="knn",
    ...                                 subset_size=0.5, epochs=2, eps=0.05,
    ...                                 embedding="raw",
    ...                                 device="cpu", random_state=0)),
    ...     ("clf", AdversarialClassifier(eps=0.05, epochs=3, device="cpu",
    ...                                   random_state=0)),
    ... ])
    >>> search = GridSearchCV(pipe, {"prune__prune_ratio": [0.25, 0.5]}, cv=2)
    >>> search.fit(X, y).best_params_["prune__prune_ratio"] in (0.25, 0.5)
    True
    >>> pipe.fit(X, y).predict(X).shape  # the pruner is skipped at predict time
    (120,)
    >>> int(pipe.named_steps["prune"].support_.sum())  # the classifier saw 60 rows
    60
    """

    _parameter_constraints: dict = {
        name: constraint
        for name, constraint in _SklearnPipeline._parameter_constraints.items()
        if name in ("steps", "memory", "verbose")
    }

    def __init__(self, steps, *, memory=None, verbose=False):
        self.steps = steps
        self.memory = memory
        self.verbose = verbose

    def _iter(self, with_final=True, filter_passthrough=True, filter_resample=True):
        """Yield ``(index, name, step)``; resamplers are left out unless
        ``filter_resample=False``, which is what makes every prediction method
        inherited from scikit-learn skip them."""
        for idx, name, step in super()._iter(
            with_final=with_final, filter_passthrough=filter_passthrough
        ):
            if filter_resample and _is_resampler(step):
                continue
            yield idx, name, step

    def _validate_steps(self):
        if not self.steps:
            raise ValueError("The pipeline is empty. Please add steps.")
        names, estimators = zip(*self.steps, strict=True)
        self._validate_names(names)
        for name, step in zip(names[:-1], estimators[:-1], strict=True):
            if _is_passthrough(step):
                continue
            is_transformer = (
                hasattr(step, "fit") or hasattr(step, "fit_transform")
            ) and hasattr(step, "transform")
            if isinstance(step, type) or not (is_transformer or _is_resampler(step)):
                raise TypeError(
                    f"All intermediate steps should be transformers (fit and "
                    f"transform), resamplers (fit_resample) or 'passthrough'; "
                    f"step {name!r} ({step!r}, type {type(step).__name__}) is "
                    f"neither."
                )
        last = estimators[-1]
        if not _is_passthrough(last) and (
            isinstance(last, type) or not hasattr(last, "fit")
        ):
            raise TypeError(
                f"The last step of a Pipeline should implement fit or be "
                f"'passthrough'; step {names[-1]!r} ({last!r}, type "
                f"{type(last).__name__}) doesn't."
            )

    def _route_params(self, params):
        """Split ``stepname__param`` fit parameters by step."""
        routed = {name: {} for name, _ in self.steps}
        for key, value in params.items():
            step, separator, param = key.partition("__")
            if not separator or step not in routed:
                raise ValueError(
                    f"Pipeline.fit does not accept the {key} parameter. Pass "
                    f"parameters to a step as stepname__parameter, e.g. "
                    f"`{self.steps[-1][0]}__{key}=...`."
                )
            routed[step][param] = value
        return routed

    def _fit(self, X, y=None, **params):
        """Validate, then fit every step but the last.

        Returns the data and labels the final step is fitted on, and the fit
        parameters of the final step.
        """
        self._validate_params()
        self.steps = list(self.steps)
        self._validate_steps()
        routed = self._route_params(params)
        memory = check_memory(self.memory)
        fit_transform = memory.cache(_fit_transform_one, ignore=["message"])
        fit_resample = memory.cache(_fit_resample_one, ignore=["message"])
        for step_idx, name, step in self._iter(
            with_final=False, filter_passthrough=False, filter_resample=False
        ):
            message = self._log_message(step_idx)
            if _is_passthrough(step):
                with _print_elapsed_time(message):
                    continue
            # As in scikit-learn: without a cache the user's step is fitted in
            # place; with one, a clone, so the cache key is the unfitted step.
            if getattr(memory, "location", None) is not None:
                step = clone(step)
            fit_one = fit_resample if _is_resampler(step) else fit_transform
            X, y, fitted = fit_one(step, X, y, routed[name], message)
            self.steps[step_idx] = (name, fitted)
        return X, y, routed[self.steps[-1][0]]

    def fit(self, X, y=None, **params):
        """Fit the steps in order; resamplers remove rows for the later steps.

        Parameters
        ----------
        X : array-like
            Training data, as the first step expects it.
        y : array-like of shape (n_samples,) or None, default=None
            Training targets; resamplers keep the labels of the rows they keep.
        **params : dict
            Fit parameters of the steps, as ``stepname__parameter=value``.

        Returns
        -------
        self : Pipeline
            The fitted pipeline.
        """
        Xt, yt, last_params = self._fit(X, y, **params)
        with _print_elapsed_time(self._log_message(len(self.steps) - 1)):
            if not _is_passthrough(self._final_estimator):
                self._final_estimator.fit(Xt, yt, **last_params)
        return self

    @available_if(_can_fit_transform)
    def fit_transform(self, X, y=None, **params):
        """Fit the pipeline and return the final step's output on the rows it
        was fitted on.

        Only available when the final step is a transformer or
        ``"passthrough"``. Rows removed by resamplers are not in the output.

        Parameters
        ----------
        X : array-like
            Training data.
        y : array-like of shape (n_samples,) or None, default=None
            Training targets.
        **params : dict
            Fit parameters of the steps, as ``stepname__parameter=value``.

        Returns
        -------
        Xt : array-like of shape (n_kept, n_output_features)
        """
        Xt, yt, last_params = self._fit(X, y, **params)
        last = self._final_estimator
        with _print_elapsed_time(self._log_message(len(self.steps) - 1)):
            if _is_passthrough(last):
                return Xt
            if hasattr(last, "fit_transform"):
                return last.fit_transform(Xt, yt, **last_params)
            return last.fit(Xt, yt, **last_params).transform(Xt)

    @available_if(_final_estimator_has("fit_predict"))
    def fit_predict(self, X, y=None, **params):
        """Fit the pipeline and return the final step's ``fit_predict`` output.

        The predictions are for the rows the final step was fitted on, that
        is after resampling.

        Parameters
        ----------
        X : array-like
            Training data.
        y : array-like of shape (n_samples,) or None, default=None
            Training targets.
        **params : dict
            Fit parameters of the steps, as ``stepname__parameter=value``.

        Returns
        -------
        y_pred : ndarray of shape (n_kept,)
        """
        Xt, yt, last_params = self._fit(X, y, **params)
        with _print_elapsed_time(self._log_message(len(self.steps) - 1)):
            return self._final_estimator.fit_predict(Xt, yt, **last_params)

    @available_if(_final_estimator_has("fit_resample"))
    def fit_resample(self, X, y, **params):
        """Fit the pipeline and return the final resampler's kept rows.

        Only available when the final step is a resampler, e.g.
        ``make_pipeline(StandardScaler(), AdversarialPruner())``.

        Parameters
        ----------
        X : array-like
            Training data.
        y : array-like of shape (n_samples,)
            Training targets.
        **params : dict
            Fit parameters of the steps, as ``stepname__parameter=value``.

        Returns
        -------
        X_kept : array-like of shape (n_kept, ...)
        y_kept : ndarray of shape (n_kept,)
        """
        Xt, yt, last_params = self._fit(X, y, **params)
        with _print_elapsed_time(self._log_message(len(self.steps) - 1)):
            return self._final_estimator.fit_resample(Xt, yt, **last_params)


def _name_estimators(estimators):
    """Lower-cased class names, with ``-1``, ``-2``, ... on duplicates, as
    scikit-learn's ``make_pipeline`` names steps."""
    names = [
        step if isinstance(step, str) else type(step).__name__.lower()
        for step in estimators
    ]
    counts = Counter(names)
    seen = Counter()
    unique = []
    for name in names:
        if counts[name] > 1:
            seen[name] += 1
            unique.append(f"{name}-{seen[name]}")
        else:
            unique.append(name)
    return list(zip(unique, estimators, strict=True))


def make_pipeline(*steps, memory=None, verbose=False):
    """Build a :class:`Pipeline` whose step names are the lower-cased class names.

    The pruning counterpart of :func:`sklearn.pipeline.make_pipeline`: a step
    with ``fit_resample`` (such as :class:`~advprune.AdversarialPruner`)
    removes rows while fitting and is skipped while predicting or scoring.

    Parameters
    ----------
    *steps : estimators
        Transformers, resamplers or ``"passthrough"``, then a final estimator.
    memory : str, joblib.Memory or None, default=None
        Caches fitted intermediate steps; see :class:`Pipeline`.
    verbose : bool, default=False
        Print the time each step takes to fit.

    Returns
    -------
    pipeline : Pipeline
        Steps named e.g. ``"adversarialpruner"`` and
        ``"adversarialclassifier"``; repeated classes get ``-1``, ``-2``, ...

    Examples
    --------
    >>> from advprune import AdversarialClassifier, AdversarialPruner, make_pipeline
    >>> pipe = make_pipeline(AdversarialPruner(), AdversarialClassifier())
    >>> [name for name, _ in pipe.steps]
    ['adversarialpruner', 'adversarialclassifier']
    >>> pipe.set_params(adversarialpruner__prune_ratio=0.3)[0].prune_ratio
    0.3
    """
    return Pipeline(_name_estimators(steps), memory=memory, verbose=verbose)
