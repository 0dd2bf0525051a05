"""AdversarialPruner: importance extrapolation for adversarial training.

The method of Nieth et al. (2024), steps 1-6 of ``DESIGN.md`` §1, in one
estimator: a class-stratified random subset is trained on adversarially while
its training dynamics are recorded; the dynamics become importance scores; a
regressor from an embedding of the samples to the scores extrapolates them to
every unscored sample; and the lowest-scored ``prune_ratio`` fraction is
removed.

Everything before the last step does not depend on ``prune_ratio``,
``class_balanced`` or ``selection``; with ``memory`` set it is cached, so that a
grid over those parameters trains the scoring model once per data set.
"""

from __future__ import annotations

import copy
import os
import time
from functools import partial
from numbers import Integral, Real

import joblib
import numpy as np
import torch
from joblib import Memory, Parallel, delayed
from scipy.sparse import issparse
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, check_memory, validate_data

from .datasets import ImageArray
from .extrapolation import ImportanceExtrapolator
from .models import default_model, penultimate_features
from .scores import SCORES, requires_labels, requires_probas
from .selection import coverage_centric, select_lowest, stratified_subset
from .training import AdversarialTrainer, batched_forward, resolve_device

__all__ = ["AdversarialPruner"]


def _is_transformer(obj):
    return hasattr(obj, "fit") and hasattr(obj, "transform")


def _compute_score(score, score_params, series, probas, y):
    """One importance score per sample from the recorded dynamics."""
    if callable(score):
        scores = score(series)
    elif not requires_probas(score):
        scores = SCORES[score](series, **score_params)
    elif requires_labels(score):
        scores = SCORES[score](probas, y, **score_params)
    else:
        scores = SCORES[score](probas, **score_params)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(y),) or not np.isfinite(scores).all():
        raise ValueError(
            f"score must return one finite value per scored sample, shape "
            f"({len(y)},); got shape {scores.shape}."
        )
    return scores


def _model_key(model):
    """A stable hash of a module's architecture and initial weights.

    ``joblib.Memory`` cannot key on the module itself: pickled tensors hash
    differently on every call, even with equal values.
    """
    weights = [t.detach().cpu().numpy() for t in model.state_dict().values()]
    return joblib.hash([repr(model), weights])


class _PenultimateFeatures(torch.nn.Module):
    """The scoring model as an embedding: its penultimate features."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return penultimate_features(self.model, x)


def _embed(X_chunk, *, embedding, batch_size, device):
    """Embed one chunk of rows with a fitted embedding, as float32 (n, d)."""
    if isinstance(embedding, str):
        E = np.asarray(X_chunk, dtype=np.float32).reshape(len(X_chunk), -1)
    elif _is_transformer(embedding):
        E = embedding.transform(
            np.asarray(X_chunk, dtype=np.float32).reshape(len(X_chunk), -1)
        )
    elif isinstance(embedding, torch.nn.Module):
        E = batched_forward(
            embedding.to(device), X_chunk, batch_size=batch_size, device=device
        )
        embedding.cpu()
    else:
        E = embedding(X_chunk)
    E = np.asarray(E, dtype=np.float32)
    if E.ndim == 0 or len(E) != len(X_chunk):
        raise ValueError(
            f"embedding must return one row per sample: {len(X_chunk)} rows for "
            f"this chunk; got an array of shape {E.shape}."
        )
    E = E.reshape(len(X_chunk), -1)
    if not np.isfinite(E).all():
        raise ValueError("The embedding produced NaN or infinite features.")
    return E


def _embed_and_predict(X_chunk, *, embedding, extrapolator, batch_size, device):
    """One chunk's extrapolated scores, and the seconds each step took."""
    started = time.perf_counter()
    E = _embed(X_chunk, embedding=embedding, batch_size=batch_size, device=device)
    embedded = time.perf_counter()
    scores = extrapolator.predict(E)
    return scores, embedded - started, time.perf_counter() - embedded


def _scoring_run(
    X_subset,
    y_subset,
    model,
    model_key,
    trainer_params,
    record,
    signal,
    score,
    score_params,
    seed,
    verbose,
    checkpoint_dir,
):
    """Train on the subset, record dynamics, turn them into scores.

    A module-level function so that ``joblib.Memory`` can cache it on its
    arguments: the subset's data and every parameter that changes the scores
    (the model through ``model_key``).
    """
    trainer = AdversarialTrainer(
        model, random_state=seed, verbose=verbose, **trainer_params
    )
    needs_probas = isinstance(score, str) and requires_probas(score)
    dynamics = trainer.fit(
        X_subset,
        y_subset,
        record=record,
        record_probas=needs_probas,
        checkpoint_dir=checkpoint_dir,
    )
    if signal == "clean":
        series, probas = dynamics.clean, dynamics.clean_probas
    else:
        series, probas = dynamics.adversarial, dynamics.adversarial_probas
    scores = _compute_score(score, score_params, series, probas, y_subset)
    trainer.model.cpu().eval()
    return scores, trainer.model, dynamics, trainer.history_


class AdversarialPruner(BaseEstimator):
    """Prune a training pool for adversarial training by importance extrapolation.

    Scores a random, class-stratified subset of the data by the training
    dynamics of an adversarial training run on that subset, extrapolates the
    scores to all other samples with a regressor on an embedding (by default the
    mean score of the 12 nearest scored neighbours in the scoring model's
    penultimate feature space), and removes the ``prune_ratio`` fraction with the
    LOWEST scores. Higher score = more important = kept.

    Parameters
    ----------
    prune_ratio : float in [0, 1), default=0.5
        Fraction of samples REMOVED. Exactly ``n - floor(prune_ratio * n)`` rows
        are kept (per class with ``class_balanced=True``).
    score : str or callable, default="dynamic_uncertainty"
        Importance score computed from the recorded dynamics: a name of
        :data:`advprune.scores.SCORES` (``"dynamic_uncertainty"``,
        ``"frequency"``, ``"forgetting"``, ``"el2n"``, ``"aum"``, ``"tdds"``,
        ``"mean_loss"``), or a callable ``f(P) -> scores`` taking the
        (n_epochs, n_scored) true-class probabilities and returning one score
        per sample, higher = more important.
    subset_size : float in (0, 1] or int, default=0.1
        Samples scored directly: a fraction of ``n`` or a count.
    class_balanced : bool, default=False
        Apply the selection rule within each class.
    selection : {"lowest", "stratified"}, default="lowest"
        ``"lowest"``: remove the lowest scores (the paper's rule).
        ``"stratified"``: coverage-centric selection (Zheng et al. 2023): drop
        the hardest few percent, then sample evenly across score bins.
    signal : {"adversarial", "clean"}, default="adversarial"
        Which recorded probability series the score is computed from.
    record : {"epoch", "online"}, default="epoch"
        ``"epoch"``: the paper's protocol, a fresh PGD pass in eval mode after
        every epoch. ``"online"``: read off the training step (nearly free,
        adversarial signal only).
    score_params : dict or None, default=None
        Keyword arguments of the named score, e.g. ``{"window": 5}``.
    model : torch.nn.Module or None, default=None
        Template of the scoring network (deep-copied, never modified). ``None``
        picks :func:`advprune.models.default_model` from the sample shape.
    method : {"pgd", "trades", "standard"}, default="pgd"
        Training objective of the scoring run.
    epochs : int, default=20
        Epochs of the scoring run; dynamic uncertainty needs more than its
        window (10).
    eps : float, default=8/255
        Attack budget, in the scale of the inputs (images in [0, 1]).
    norm : {"linf", "l2"}, default="linf"
    attack_steps : int, default=10
    step_size : float or None, default=None
        ``None`` uses ``2.5 * eps / attack_steps``.
    optimizer : {"sgd", "adam"}, default="sgd"
    lr : float, default=0.05
    batch_size : int, default=128
        Training batch size; embedding and extrapolation use ``chunk_size``.
    bounds : tuple of float or None, default=(0.0, 1.0)
        Valid input box; ``None`` for unbounded features.
    augment : callable or None, default=None
        Augmentation of training batches, ``augment(x_batch, generator) ->
        x_batch``, e.g. :class:`advprune.training.RandomCropFlip` for
        CIFAR-style images; never applied to the recorded dynamics or the embedding.
        It is tried on two samples before training, so that one that cannot
        work on the data fails first.
    embedding : {"model", "raw"}, transformer, callable or torch.nn.Module, \
default="model"
        Feature space of the extrapolation. ``"model"``: penultimate features
        of the trained scoring model. ``"raw"``: the flattened input. A
        scikit-learn transformer (e.g. ``PCA(32)``) is cloned and fitted on the
        flattened scored subset. A callable maps a batch of X to an array of
        shape (batch, d); a ``torch.nn.Module`` is applied in eval mode.
    extrapolator : regressor or None, default=None
        Any scikit-learn regressor (cloned); ``None`` uses
        ``ImportanceExtrapolator(n_neighbors=12)``.
    chunk_size : int, default=65536
        Rows embedded and extrapolated at a time; bounds memory, so that a
        memory-mapped pool larger than RAM works.
    memory : str, joblib.Memory or None, default=None
        Caches the scoring run on the scored subset and the scoring
        parameters, as ``sklearn.pipeline.Pipeline`` caches transformers.
    checkpoint_dir : str, path or None, default=None
        Where the scoring run saves a checkpoint after every epoch (model,
        optimizer, RNG states, dynamics so far), atomically. Fitting again with
        the same data and parameters after a crash resumes from the last
        epoch and gives the same scores (bit-identical on the CPU).
    n_jobs : int or None, default=None
        Parallel jobs over the chunks of embedding and extrapolation, through
        joblib: ``None`` means 1 unless in a ``joblib.parallel_config``
        context, whose backend (e.g. ``"dask"`` with a ``dask.distributed``
        client) then spreads the chunks over processes or machines.
    device : str, default="auto"
        ``"auto"`` uses CUDA when available.
    amp : bool, default=False
        Mixed precision on CUDA.
    random_state : int, RandomState or None, default=None
        Seeds the subset, the model's initialisation and the training run.
    verbose : bool, default=False
        Progress bars.

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        Direct scores where ``scored_mask_`` is True, extrapolated elsewhere.
    scored_mask_ : ndarray of shape (n_samples,), bool
        True where the score was computed directly.
    support_ : ndarray of shape (n_samples,), bool
        True = kept.
    subset_indices_ : ndarray of int
        Rows scored directly (sorted).
    model_ : torch.nn.Module
        The scoring model after training (on the CPU, eval mode).
    dynamics_ : advprune.training.Dynamics
        The recorded dynamics of the scored subset.
    embedding_ : object
        The fitted embedding (model, transformer or callable).
    extrapolator_ : regressor
        The fitted extrapolator.
    timings_ : dict
        Seconds spent in ``scoring``, ``embedding`` and ``extrapolation``
        (``scoring`` is 0 when read from the cache).
    n_features_in_ : int
        ``X.shape[1]`` in fit, as scikit-learn counts features.
    sample_shape_ : tuple of int
        Shape of one sample, ``X.shape[1:]`` in fit.

    Examples
    --------
    >>> import numpy as np
    >>> from advprune import AdversarialPruner
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(300, 4)).astype("float32")
    >>> y = (X[:, 0] > 0.5).astype(int)
    >>> pruner = AdversarialPruner(prune_ratio=0.5, subset_size=0.5, epochs=12,
    ...                            eps=0.05, embedding="raw", random_state=0)
    >>> X_kept, y_kept = pruner.fit_resample(X, y)
    >>> X_kept.shape
    (150, 4)
    >>> int(pruner.scored_mask_.sum())
    150
    """

    _parameter_constraints = {
        "prune_ratio": [Interval(Real, 0, 1, closed="left")],
        "score": [StrOptions(set(SCORES)), callable],
        "subset_size": [
            Interval(Real, 0, 1, closed="right"),
            Interval(Integral, 1, None, closed="left"),
        ],
        "class_balanced": ["boolean"],
        "selection": [StrOptions({"lowest", "stratified"})],
        "signal": [StrOptions({"adversarial", "clean"})],
        "record": [StrOptions({"epoch", "online"})],
        "score_params": [dict, None],
        "model": [torch.nn.Module, None],
        "method": [StrOptions({"pgd", "trades", "standard"})],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "eps": [Interval(Real, 0, None, closed="left")],
        "norm": [StrOptions({"linf", "l2"})],
        "attack_steps": [Interval(Integral, 1, None, closed="left")],
        "step_size": [Interval(Real, 0, None, closed="neither"), None],
        "optimizer": [StrOptions({"sgd", "adam"})],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "bounds": [tuple, None],
        "augment": [callable, None],
        "embedding": "no_validation",  # checked where it is fitted
        "extrapolator": [HasMethods(["fit", "predict"]), None],
        "chunk_size": [Interval(Integral, 1, None, closed="left")],
        "memory": [None, str, Memory],
        "checkpoint_dir": [None, str, os.PathLike],
        "n_jobs": [Integral, None],
        "device": [str, torch.device],
        "amp": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        prune_ratio=0.5,
        score="dynamic_uncertainty",
        subset_size=0.1,
        class_balanced=False,
        selection="lowest",
        *,
        signal="adversarial",
        record="epoch",
        score_params=None,
        model=None,
        method="pgd",
        epochs=20,
        eps=8 / 255,
        norm="linf",
        attack_steps=10,
        step_size=None,
        optimizer="sgd",
        lr=0.05,
        batch_size=128,
        bounds=(0.0, 1.0),
        augment=None,
        embedding="model",
        extrapolator=None,
        chunk_size=65536,
        memory=None,
        checkpoint_dir=None,
        n_jobs=None,
        device="auto",
        amp=False,
        random_state=None,
        verbose=False,
    ):
        self.prune_ratio = prune_ratio
        self.score = score
        self.subset_size = subset_size
        self.class_balanced = class_balanced
        self.selection = selection
        self.signal = signal
        self.record = record
        self.score_params = score_params
        self.model = model
        self.method = method
        self.epochs = epochs
        self.eps = eps
        self.norm = norm
        self.attack_steps = attack_steps
        self.step_size = step_size
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.bounds = bounds
        self.augment = augment
        self.embedding = embedding
        self.extrapolator = extrapolator
        self.chunk_size = chunk_size
        self.memory = memory
        self.checkpoint_dir = checkpoint_dir
        self.n_jobs = n_jobs
        self.device = device
        self.amp = amp
        self.random_state = random_state
        self.verbose = verbose

    # -- validation -------------------------------------------------------------

    def _check_inputs(self, X, y):
        """Validate parameters and data before any work; return (X, y) where X
        is left as given (a memmap stays a memmap) and y is an integer array."""
        self._validate_params()
        X = self._check_X(X, reset=True)
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y "
                "is None."
            )
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != X.shape[0]:
            raise ValueError(
                f"y must be 1-D with one label per row of X ({X.shape[0]}); "
                f"got shape {y.shape}."
            )
        if not np.issubdtype(y.dtype, np.integer):
            if y.dtype.kind == "f" and np.isfinite(y).all() and (y == y.round()).all():
                y = y.astype(np.int64)
            else:
                raise TypeError(
                    f"Unknown label type: y must hold integer class labels; got "
                    f"dtype {y.dtype}."
                )
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError("y must hold at least two classes; got one.")
        n = X.shape[0]
        n_subset = self._subset_count(n)
        if n_subset < len(classes) or n_subset > n:
            raise ValueError(
                f"subset_size must give between n_classes ({len(classes)}) and "
                f"n_samples ({n}) scored samples; got {self.subset_size!r} "
                f"({n_subset} samples)."
            )
        self._check_score(len(classes))
        n_neighbors = getattr(self.extrapolator, "n_neighbors", 12)
        if isinstance(n_neighbors, Integral) and n_subset < n_neighbors:
            raise ValueError(
                f"subset_size gives {n_subset} scored samples, fewer than the "
                f"extrapolator's n_neighbors={n_neighbors}; score more samples or "
                "use fewer neighbours."
            )
        if self.signal == "clean" and self.record == "online":
            raise ValueError(
                "signal='clean' needs record='epoch': online recording only sees "
                "the training step's adversarial forward pass."
            )
        if self.bounds is not None and len(self.bounds) != 2:
            raise ValueError(f"bounds must be (low, high) or None; got {self.bounds}.")
        self._check_finite(X)
        return X, y

    def _check_score(self, n_classes):
        """Dry-run the score on dynamics of the shape the scoring run will
        record, so that a score that cannot work (too few epochs for its
        window, bad parameters, a callable returning the wrong shape) fails
        before any training."""
        n = 3
        P = np.linspace(0.2, 0.8, n * self.epochs).reshape(self.epochs, n)
        probas = np.full((self.epochs, n, n_classes), 1.0 / n_classes)
        try:
            _compute_score(
                self.score,
                dict(self.score_params or {}),
                P,
                probas,
                np.arange(n) % n_classes,
            )
        except (TypeError, ValueError) as exc:
            raise type(exc)(
                f"score={self.score!r} with score_params={self.score_params!r} "
                f"and epochs={self.epochs} cannot be computed: {exc}"
            ) from exc

    def _subset_count(self, n):
        if isinstance(self.subset_size, Integral):
            return int(self.subset_size)
        return round(self.subset_size * n)

    def _check_X(self, X, *, reset):
        """Validate X without loading it: scikit-learn's checks on the first
        rows (type, sparse, complex, empty, feature count), then a chunked scan
        for NaN and infinity. Returns X as given when it is already an array
        (a memmap stays a memmap)."""
        if (
            issparse(X)
            or not (hasattr(X, "shape") and hasattr(X, "dtype"))
            or X.dtype == object
        ):
            X = check_array(X, allow_nd=True, dtype="numeric", ensure_all_finite=False)
        if len(X.shape) < 2:
            raise ValueError(
                f"X must have shape (n_samples, n_features) or (n_samples, "
                f"*sample_shape); got shape {X.shape}."
            )
        validate_data(
            self,
            X[:2],
            reset=reset,
            allow_nd=True,
            dtype="numeric",
            ensure_all_finite=False,
        )
        if reset:
            self.sample_shape_ = tuple(X.shape[1:])
        elif tuple(X.shape[1:]) != self.sample_shape_:
            raise ValueError(
                f"X must have samples of shape {self.sample_shape_}, as in fit; "
                f"got {tuple(X.shape[1:])}."
            )
        self._check_finite(X)
        return X

    def _check_finite(self, X):
        if isinstance(X, ImageArray):
            return  # uint8 images, scaled on read: no NaN or infinity possible
        for start in range(0, X.shape[0], self.chunk_size):
            chunk = np.asarray(X[start : start + self.chunk_size])
            if chunk.dtype.kind not in "biuf":
                raise TypeError(f"X must be numeric; got dtype {chunk.dtype}.")
            if chunk.dtype.kind == "f" and not np.isfinite(chunk).all():
                raise ValueError("X contains NaN or infinity.")

    # -- the ratio-independent part: scores for every sample --------------------

    def _trainer_params(self):
        return {
            "method": self.method,
            "eps": self.eps,
            "norm": self.norm,
            "attack_steps": self.attack_steps,
            "step_size": self.step_size,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "bounds": self.bounds,
            "augment": self.augment,
            "device": self.device,
            "amp": self.amp,
        }

    def _make_model(self, sample_shape, n_classes, seed):
        # Seed the initialisation without touching the caller's global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if self.model is None:
                return default_model(sample_shape, n_classes)
            return copy.deepcopy(self.model)

    def _fit_embedding(self, X_subset, model):
        if isinstance(self.embedding, str) and self.embedding == "model":
            return _PenultimateFeatures(model).eval()
        if isinstance(self.embedding, str) and self.embedding == "raw":
            return "raw"
        if _is_transformer(self.embedding):
            return clone(self.embedding).fit(X_subset.reshape(len(X_subset), -1))
        if isinstance(self.embedding, torch.nn.Module):
            return copy.deepcopy(self.embedding).eval()
        if callable(self.embedding):
            return self.embedding
        raise TypeError(
            "embedding must be 'model', 'raw', a scikit-learn transformer, a "
            f"callable or a torch.nn.Module; got {type(self.embedding).__name__}."
        )

    def _embedding_kwargs(self):
        return {
            "embedding": self.embedding_,
            "batch_size": 4 * self.batch_size,
            "device": resolve_device(self.device),
        }

    def _map_chunks(self, task, X, rows):
        """``(chunk, task(X[chunk]))`` for consecutive chunks of ``rows``.

        Chunks go through joblib, so ``n_jobs`` (or a ``joblib.parallel_config``
        backend such as Dask) spreads them over processes or machines; chunks
        are read from ``X`` only as workers become free, so memory stays
        bounded by ``chunk_size``.
        """
        chunks = [
            rows[start : start + self.chunk_size]
            for start in range(0, len(rows), self.chunk_size)
        ]
        # Dispatch no further ahead than the workers: every chunk read ahead
        # is a chunk_size block of X held in memory.
        results = Parallel(
            n_jobs=self.n_jobs, return_as="generator", pre_dispatch="n_jobs"
        )(delayed(task)(X[chunk]) for chunk in chunks)
        return zip(chunks, results, strict=True)

    def _extrapolate(self, X, rows, out):
        """Write the extrapolated scores of ``X[rows]`` to ``out``; return the
        seconds spent embedding and extrapolating, summed over chunks."""
        task = partial(
            _embed_and_predict,
            extrapolator=self.extrapolator_,
            **self._embedding_kwargs(),
        )
        seconds = np.zeros(2)
        for chunk, (scores, embed_seconds, predict_seconds) in self._map_chunks(
            task, X, rows
        ):
            out[chunk] = scores
            seconds += (embed_seconds, predict_seconds)
        return seconds

    def _fit_scores(self, X, y):
        rng = check_random_state(self.random_state)
        subset = stratified_subset(y, self._subset_count(len(y)), random_state=rng)
        init_seed, train_seed = (int(s) for s in rng.randint(2**31 - 1, size=2))
        if self.class_balanced:
            unscored = np.setdiff1d(np.unique(y), y[subset])
            if unscored.size:
                raise ValueError(
                    f"class_balanced=True needs scored samples of every class; the "
                    f"subset (subset_size={self.subset_size!r}) holds none of "
                    f"classes {unscored.tolist()}. Score more samples."
                )

        X_subset = np.asarray(X[subset], dtype=np.float32)
        y_subset = y[subset]
        classes = np.unique(y)
        y_encoded = np.searchsorted(classes, y_subset)
        model = self._make_model(X.shape[1:], len(classes), init_seed)

        run = check_memory(self.memory).cache(
            _scoring_run, ignore=["model", "verbose", "checkpoint_dir"]
        )
        started = time.perf_counter()
        subset_scores, self.model_, self.dynamics_, self.history_ = run(
            X_subset,
            y_encoded,
            model,
            _model_key(model),
            self._trainer_params(),
            self.record,
            self.signal,
            self.score,
            dict(self.score_params or {}),
            train_seed,
            self.verbose,
            self.checkpoint_dir,
        )
        scoring_seconds = time.perf_counter() - started

        self.subset_indices_ = subset
        self.scored_mask_ = np.zeros(len(y), dtype=bool)
        self.scored_mask_[subset] = True
        self.scores_ = np.empty(len(y), dtype=np.float64)
        self.scores_[subset] = subset_scores

        self.embedding_ = self._fit_embedding(X_subset, self.model_)
        started = time.perf_counter()
        E_subset = _embed(X_subset, **self._embedding_kwargs())
        embedded = time.perf_counter()
        extrapolator = (
            ImportanceExtrapolator(n_neighbors=12)
            if self.extrapolator is None
            else self.extrapolator
        )
        self.extrapolator_ = clone(extrapolator).fit(E_subset, subset_scores)
        fitted = time.perf_counter()
        embedding_seconds, extrapolation_seconds = self._extrapolate(
            X, np.flatnonzero(~self.scored_mask_), self.scores_
        )
        self.timings_ = {
            "scoring": scoring_seconds,
            "embedding": embedded - started + embedding_seconds,
            "extrapolation": fitted - embedded + extrapolation_seconds,
        }

    # -- public API -------------------------------------------------------------

    def fit(self, X, y):
        """Score every sample and select the rows to keep.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, \
\\*sample_shape)
            Training pool; a read-only ``np.memmap`` is read chunk by chunk.
            Images live in [0, 1]. Never modified.
        y : array-like of shape (n_samples,)
            Integer class labels.

        Returns
        -------
        self : AdversarialPruner
        """
        X, y = self._check_inputs(X, y)
        self._fit_scores(X, y)
        self.support_ = self._select(y)
        return self

    def _select(self, y):
        if self.selection == "stratified":
            return coverage_centric(
                self.scores_,
                self.prune_ratio,
                y=y,
                class_balanced=self.class_balanced,
                random_state=self.random_state,
            )
        return select_lowest(
            self.scores_, self.prune_ratio, y=y, class_balanced=self.class_balanced
        )

    def get_support(self, indices=False):
        """The kept rows of the data ``fit`` saw.

        Parameters
        ----------
        indices : bool, default=False
            Return sorted integer indices instead of a boolean mask.

        Returns
        -------
        ndarray
            Boolean mask of shape (n_samples,), True = kept, or the sorted
            indices of the kept rows.
        """
        check_is_fitted(self, "support_")
        return np.flatnonzero(self.support_) if indices else self.support_.copy()

    def fit_transform(self, X, y):
        """Fit, then return the kept rows of ``X`` in their original order.

        Returns
        -------
        X_kept : ndarray of shape (n_kept, ...)
        """
        return self.fit_resample(X, y)[0]

    def fit_resample(self, X, y):
        """Fit, then return the kept rows of ``X`` and ``y``.

        Returns
        -------
        X_kept : ndarray of shape (n_kept, ...)
        y_kept : ndarray of shape (n_kept,)
        """
        self.fit(X, y)
        kept = np.flatnonzero(self.support_)
        X = X if hasattr(X, "shape") else np.asarray(X)
        return np.asarray(X[kept]), np.asarray(y)[kept]

    def score_samples(self, X):
        """Extrapolated importance of new samples (higher = more important).

        Embeds ``X`` with the fitted embedding and predicts with the fitted
        extrapolator, chunk by chunk, e.g. to rank a fresh batch of generated
        data without another scoring run.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        check_is_fitted(self, "extrapolator_")
        X = self._check_X(X, reset=False)
        scores = np.empty(X.shape[0], dtype=np.float64)
        self._extrapolate(X, np.arange(X.shape[0]), scores)
        return scores

    def embed(self, X, out=None):
        """The fitted embedding of ``X``, the space the scores are extrapolated in.

        Computed chunk by chunk (``chunk_size`` rows, through joblib as in
        ``fit``), so a memory-mapped ``X`` and a memory-mapped ``out`` keep
        memory bounded.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Samples of the shape seen in ``fit``.
        out : ndarray of shape (n_samples, n_dims) or None, default=None
            Where to write the embedding (e.g. a ``np.lib.format.open_memmap``
            array); ``None`` allocates it.

        Returns
        -------
        E : ndarray of shape (n_samples, n_dims), float32
        """
        check_is_fitted(self, "embedding_")
        X = self._check_X(X, reset=False)
        task = partial(_embed, **self._embedding_kwargs())
        for chunk, E in self._map_chunks(task, X, np.arange(X.shape[0])):
            if out is None:
                out = np.empty((X.shape[0], E.shape[1]), dtype=np.float32)
            out[chunk] = E
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.non_deterministic = self.random_state is None
        return tags
