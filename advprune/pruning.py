"""AdversarialPruner: importance extrapolation for adversarial training.

The method of Nieth et al. (2024) in one estimator, as a short composition of
its public stages:

1. :func:`advprune.scoring.scoring_run`: adversarial training on a
   class-stratified random subset, recording the training dynamics (and, for
   every strategy but the paper's kNN, tracking the model's predictions on the
   whole pool);
2. :func:`advprune.scores.compute_score`: the dynamics become importance scores;
3. the scores of the unscored samples, by the ``extrapolation`` strategy: the
   default ranks every sample by the scoring model's confidence
   (:func:`advprune.extrapolation.confidence_scores`, no step 2); the paper's
   (:mod:`advprune.embedding` and :func:`advprune.extrapolation.extrapolate`)
   predicts them with a regressor from an embedding of the samples;
4. :func:`advprune.selection.select`: the lowest-scored ``prune_ratio``
   fraction is removed.

Steps 1 to 3 do not depend on ``prune_ratio``, ``class_balanced`` or
``selection``; with ``memory`` set the scoring run is cached, so that a grid
over those parameters trains the scoring model once per data set.
"""

import os
import sys
import time
from inspect import signature
from numbers import Integral, Real

import numpy as np
import torch
from joblib import Memory
from scipy.sparse import issparse
from sklearn.base import BaseEstimator
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_array
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from ._progress import progress_bar
from ._validation import (
    TRAINING_CONSTRAINTS,
    check_bounds,
    check_channels_first,
    check_writable_dir,
    encode_labels,
    scan_rows,
    training_params,
)
from .datasets import ImageArray
from .embedding import (
    EMBEDDINGS,
    EmbeddedRows,
    check_embedding,
    embed,
    fit_embedding,
)
from .extrapolation import (
    STRATEGIES,
    check_extrapolator,
    confidence_scores,
    extrapolate,
    held_out_scores,
)
from .scores import SCORES, compute_score, requires_probas
from .scoring import forward_passes, scoring_run, subset_count
from .selection import RULES, select
from .training import Dynamics, resolve_device
from .training._batches import batch_slices
from .training._distributed import merge_disjoint, world

__all__ = ["AdversarialPruner"]

# After how many epochs each strategy tracks the pool's clean predictions:
# held-out series need every epoch for dynamic uncertainty's window; the
# confidence strategy uses only their mean level.
_TRACK_EVERY = {"confidence": 4, "held_out": 1, "learned": 1}


def _fitted_knn(pruner):
    """Whether ``score_samples`` applies: the strategy of the last fit, or the
    one set while unfitted."""
    return getattr(pruner, "_fitted_extrapolation", pruner.extrapolation) == "knn"


class AdversarialPruner(BaseEstimator):
    """Prune a training pool for adversarial training by importance extrapolation.

    Trains a model adversarially on a random, class-stratified subset of the
    data, gives every sample an importance score from that run, and removes the
    ``prune_ratio`` fraction with the LOWEST scores. Higher score = more
    important = kept. How samples outside the subset get their scores is the
    ``extrapolation`` strategy: by default (``"confidence"``) every sample is
    ranked by the scoring model's adversarial and clean confidence, an estimate
    of its dynamic uncertainty; the paper's (``"knn"``) computes the score from
    the subset's training dynamics and extrapolates it with the mean score of
    the 12 nearest scored neighbours in the scoring model's penultimate feature
    space.

    Parameters
    ----------
    prune_ratio : float in [0, 1), default=0.5
        Fraction of samples REMOVED. Exactly ``n - floor(prune_ratio * n)`` rows
        are kept (per class with ``class_balanced=True``).
    importance : str or callable, default="dynamic_uncertainty"
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
    extrapolation : {"confidence", "held_out", "knn", "class_knn", "learned"}, \
default="confidence"
        How the samples outside the scored subset get their scores (see the
        user guide's "Extrapolation strategies", with the measured fidelity and
        cost of each):

        - ``"confidence"``: the scoring model, after training, attacks every
          sample once (PGD with ``attack_steps``) and its clean predictions are
          tracked every 4th epoch; every sample, scored or not, is ranked by
          its adversarial confidence blended with its mean clean confidence
          (:func:`advprune.extrapolation.confidence_scores`). In scoring runs
          this short, whole-pool dynamic uncertainty orders samples as this
          confidence does, so it estimates dynamic uncertainty for every
          sample without neighbours; ``importance`` must be
          ``"dynamic_uncertainty"``, and the scores are percentiles in [0, 1].
        - ``"held_out"``: the scoring model's clean predictions on every
          sample are tracked after every epoch; an unscored sample's score is
          ``importance`` of its held-out series, mapped onto the scored
          samples' scale (:func:`advprune.extrapolation.held_out_scores`).
        - ``"knn"``: the paper's: a regressor (``extrapolator``) from the
          ``embedding`` of the scored samples to their scores. The paper's
          protocol also trains with ``attack_steps`` and no step floor:
          ``train_attack_steps=None, min_steps=None``.
        - ``"class_knn"``: the same within each class (same-label neighbours).
        - ``"learned"``: a regressor (``extrapolator``, by default a ridge
          regression on standardised features) fitted on the scored samples
          from their embedding and their tracked clean series.
    signal : {"adversarial", "clean"}, default="adversarial"
        Which recorded probability series the score is computed from.
    record : {"epoch", "online"}, default="epoch"
        ``"epoch"``: the paper's protocol, a fresh PGD pass in eval mode after
        every epoch. ``"online"``: read off the training step (nearly free,
        adversarial signal only).
    importance_params : dict or None, default=None
        Keyword arguments of the named score, e.g. ``{"window": 5}``. With
        ``extrapolation="confidence"``, those of
        :func:`advprune.extrapolation.confidence_scores`: ``clean_weight`` and
        ``class_weight`` (e.g. ``{"class_weight": 1.0}`` to rank every sample
        within its class only; ``{"clean_weight": 1.0}`` ranks by the clean
        series alone and skips the attack on every sample, so with
        ``memory`` its scoring run is cached apart from the other weights).
    model : torch.nn.Module, str or None, default=None
        The scoring network: a template (deep-copied, never modified), a name
        of :data:`advprune.models.MODEL_NAMES`, or ``None`` for
        :func:`advprune.models.default_model` of the sample shape.
    method : {"pgd", "trades", "standard"}, default="pgd"
        Training objective of the scoring run.
    epochs : int, default=20
        Epochs of the scoring run; dynamic uncertainty needs more than its
        window (10).
    eps : float, default=8/255
        Attack budget, in the scale of the inputs (images in [0, 1]).
    norm : {"linf", "l2"}, default="linf"
    attack_steps : int, default=10
        PGD steps of the attacks that measure the samples: the recorded
        dynamics and the confidence pass.
    train_attack_steps : int or None, default=1
        PGD steps of the scoring run's training attack; ``None`` uses
        ``attack_steps``. One step with a random start, as in fast adversarial
        training, keeps the scoring run cheap; the benchmark found the scores
        as faithful as with five (user guide, "Scoring budget"). With long
        scoring runs at a large ``eps``, where one-step training can collapse
        (catastrophic overfitting), set it to ``attack_steps``.
    step_size : float or None, default=None
        ``None`` uses ``2.5 * eps / steps`` for each attack.
    beta : float, default=6.0
        TRADES trade-off; ignored by the other methods.
    optimizer : {"sgd", "adam"}, default="sgd"
    lr : float, default=0.05
    momentum : float, default=0.9
        SGD only.
    nesterov : bool, default=True
        SGD only.
    weight_decay : float, default=5e-4
    schedule : {"cosine", "multistep", "constant"}, default="cosine"
        Learning-rate schedule of the scoring run, stepped after every batch.
    batch_size : int, default=128
        Training batch size (cut by ``min_steps``); embedding and extrapolation
        use ``chunk_size``.
    min_steps : int or None, default=320
        A floor on the scoring run's optimizer steps: the batch size is cut, at
        the same ``epochs`` (so the same sample passes and cost), until the run
        takes at least ``min_steps`` steps, but not below 8 samples a batch. A
        200-sample subset at batch 128 takes 2 steps an epoch, too few to learn
        from; the floor binds only for subsets under ``batch_size * min_steps
        / epochs`` samples (2,048 with the defaults). ``None``: no floor.
    bounds : tuple of float or None, default=(0.0, 1.0)
        Valid input box, which the attacks keep inputs in; X outside it is an
        error. ``None`` for unbounded features.
    augment : callable or None, default=None
        Augmentation of training batches, ``augment(x_batch, generator) ->
        x_batch``, e.g. :class:`advprune.training.RandomCropFlip` for
        CIFAR-style images; never applied to the recorded dynamics or the embedding.
        It is tried on two samples before training, so that one that cannot
        work on the data fails first.
    embedding : {"model", "raw"}, transformer, callable or torch.nn.Module, \
default="model"
        Feature space of the ``"knn"``, ``"class_knn"`` and ``"learned"``
        strategies and of :meth:`embed`. ``"model"``: penultimate features
        of the trained scoring model. ``"raw"``: the flattened input. A
        scikit-learn transformer (e.g. ``PCA(32)``) is cloned and fitted on the
        flattened scored subset. A callable maps a batch of X to an array of
        shape (batch, d); a ``torch.nn.Module`` is applied in eval mode. Each
        is tried before training, so that one that cannot embed the data
        fails first: a transformer is fitted once more, on as many rows as
        the subset; a callable or module is applied to two rows.
    extrapolator : regressor or None, default=None
        The regressor of the ``"knn"``, ``"class_knn"`` and ``"learned"``
        strategies: any scikit-learn regressor (cloned); ``None`` uses
        ``ImportanceExtrapolator(n_neighbors=12)`` (for ``"learned"``, a ridge
        regression on standardised features). A neighbour regressor asked
        for more neighbours than there are scored samples uses them all, with
        a warning.
    chunk_size : int, default=65536
        Rows embedded and extrapolated at a time; bounds memory, so that a
        memory-mapped pool larger than RAM works.
    memory : str, joblib.Memory or None, default=None
        Caches the scoring run on the scored subset and the scoring
        parameters, as ``sklearn.pipeline.Pipeline`` caches transformers. A
        location that cannot be created or written is a ``ValueError`` before
        training.
    checkpoint_dir : str, path or None, default=None
        Where the scoring run saves a checkpoint after every epoch (model,
        optimizer, RNG states, dynamics so far), atomically and with a
        SHA-256 digest. Fitting again with the same data and parameters after
        a crash resumes from the last epoch and gives the same scores
        (bit-identical on the CPU); ``verbose``, ``n_jobs``, ``chunk_size``
        and the spelling of the device (``"auto"`` or ``"cpu"`` on a CPU
        machine) may differ, and ``augment`` must be the same function (by
        name) or an object of the same class and repr. A damaged checkpoint,
        or one of another run, is a ``ValueError`` naming the file, raised
        before anything is restored; see
        :meth:`advprune.training.AdversarialTrainer.fit`.
    n_jobs : int or None, default=None
        Parallel jobs over the chunks of embedding and extrapolation, through
        joblib: ``None`` means 1 unless in a ``joblib.parallel_config``
        context, whose backend (e.g. ``"dask"`` with a ``dask.distributed``
        client) then spreads the chunks over processes or machines.
    device : str, default="auto"
        ``"auto"`` uses CUDA when available; a CUDA device that is not there
        is an error before any work.
    amp : bool or {"float16", "bfloat16"}, default=False
        Mixed precision of the scoring run, the recording and the pool
        tracking: ``"float16"`` (or ``True``) on CUDA, ``"bfloat16"`` on CUDA
        or the CPU (see :class:`~advprune.training.AdversarialTrainer`).
    random_state : int, RandomState or None, default=None
        Seeds the subset, the model's initialisation and the training run.
    verbose : bool, default=False
        Progress bars: the scoring run's batches and recording, the embedding
        of the pool, the extrapolation (and the embedding in
        :meth:`score_samples` and :meth:`embed`).

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        Importance of every sample, scored and unscored on one scale: for
        ``"confidence"`` percentiles of every sample's confidence; for the
        other strategies ``importance`` computed from the recorded dynamics
        where ``scored_mask_`` is True, extrapolated elsewhere.
    scored_mask_ : ndarray of shape (n_samples,), bool
        True for the subset the scoring model trained on.
    support_ : ndarray of shape (n_samples,), bool
        True = kept; the same as :meth:`get_support`.
    sample_indices_ : ndarray of shape (n_kept,), int
        Sorted indices of the kept rows, as imbalanced-learn's samplers name
        them; the same as ``get_support(indices=True)``.
    classes_ : ndarray of shape (n_classes,)
        The class labels of ``y``.
    subset_indices_ : ndarray of int
        Rows scored directly (sorted).
    model_ : torch.nn.Module
        The scoring model after training (on the CPU, eval mode).
    dynamics_ : advprune.training.Dynamics or None
        The recorded dynamics of the scored subset; None with
        ``extrapolation="confidence"``, which records nothing on the subset.
    tracking_ : advprune.scoring.Tracking or None
        The scoring model's predictions on every sample during the run
        (``"confidence"``, ``"held_out"`` and ``"learned"``).
    history_ : list of dict
        Per epoch of the scoring run: loss, training accuracy, seconds.
    embedding_ : object
        The fitted embedding (model, transformer or callable).
    extrapolator_ : regressor, dict or None
        The fitted regressor of ``"knn"`` and ``"learned"``, one per class of
        ``"class_knn"``; None for the other strategies.
    timings_ : dict
        Seconds spent in ``scoring`` (the training run), ``tracking`` (its
        passes over the pool), ``embedding`` and ``extrapolation``. With
        ``n_jobs`` workers in other processes, their embedding time is counted
        as extrapolation.
    cost_ : dict
        The same stages in forward-pass equivalents (a forward pass of one
        sample is 1, a backward pass 2; see
        :func:`advprune.scoring.forward_passes`): ``scoring``, ``tracking``,
        ``embedding``, their ``total``, the ``direct`` cost of scoring the
        whole pool with the paper's protocol (``epochs`` of PGD training with
        ``attack_steps`` and epoch recording), and ``fraction_of_direct``;
        also the scoring run's ``optimizer_steps``.
    n_features_in_ : int
        Features of a flattened sample, as :class:`advprune.AdversarialClassifier`
        counts them.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names, when ``X`` was a DataFrame with string column names.
    sample_shape_ : tuple of int
        Shape of one sample, ``X.shape[1:]`` in fit.

    Examples
    --------
    >>> import numpy as np
    >>> from advprune import AdversarialPruner
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(300, 4)).astype("float32")
    >>> y = np.where(X[:, 0] > 0.5, "high", "low")
    >>> pruner = AdversarialPruner(prune_ratio=0.5, subset_size=0.5, epochs=12,
    ...                            eps=0.05, embedding="raw", random_state=0)
    >>> X_kept, y_kept = pruner.fit_resample(X, y)
    >>> X_kept.shape
    (150, 4)
    >>> int(pruner.scored_mask_.sum()), pruner.classes_.tolist()
    (150, ['high', 'low'])
    """

    _parameter_constraints = {
        "prune_ratio": [Interval(Real, 0, 1, closed="left")],
        "importance": [StrOptions(set(SCORES)), callable],
        "subset_size": [
            Interval(Real, 0, 1, closed="right"),
            Interval(Integral, 1, None, closed="left"),
        ],
        "class_balanced": ["boolean"],
        "selection": [StrOptions(set(RULES))],
        "extrapolation": [StrOptions(set(STRATEGIES))],
        "signal": [StrOptions({"adversarial", "clean"})],
        "record": [StrOptions({"epoch", "online"})],
        "importance_params": [dict, None],
        "model": [torch.nn.Module, str, None],
        **TRAINING_CONSTRAINTS,
        "train_attack_steps": [Interval(Integral, 1, None, closed="left"), None],
        "min_steps": [Interval(Integral, 1, None, closed="left"), None],
        "embedding": [
            StrOptions(set(EMBEDDINGS)),
            HasMethods(["fit", "transform"]),
            callable,
        ],
        "extrapolator": [HasMethods(["fit", "predict"]), None],
        "chunk_size": [Interval(Integral, 1, None, closed="left")],
        "memory": [None, str, Memory],
        "checkpoint_dir": [None, str, os.PathLike],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        prune_ratio=0.5,
        importance="dynamic_uncertainty",
        subset_size=0.1,
        class_balanced=False,
        selection="lowest",
        *,
        extrapolation="confidence",
        signal="adversarial",
        record="epoch",
        importance_params=None,
        model=None,
        method="pgd",
        epochs=20,
        eps=8 / 255,
        norm="linf",
        attack_steps=10,
        train_attack_steps=1,
        step_size=None,
        beta=6.0,
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        schedule="cosine",
        batch_size=128,
        min_steps=320,
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
        self.importance = importance
        self.subset_size = subset_size
        self.class_balanced = class_balanced
        self.selection = selection
        self.extrapolation = extrapolation
        self.signal = signal
        self.record = record
        self.importance_params = importance_params
        self.model = model
        self.method = method
        self.epochs = epochs
        self.eps = eps
        self.norm = norm
        self.attack_steps = attack_steps
        self.train_attack_steps = train_attack_steps
        self.step_size = step_size
        self.beta = beta
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.batch_size = batch_size
        self.min_steps = min_steps
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

    # -- validation: every check before any training -----------------------------

    def _check_inputs(self, X, y):
        """Validate parameters and data before any work; return ``(X, codes,
        classes)`` where X is left as given when it is an array (a memmap stays
        a memmap) and ``codes`` are the labels as int64 in [0, n_classes)."""
        self._validate_params()
        bounds = check_bounds(self.bounds)
        resolve_device(self.device)
        if self.n_jobs == 0:
            raise ValueError("n_jobs == 0 has no meaning; pass None, -1 or >= 1.")
        if (
            self.extrapolation != "confidence"  # it records no dynamics
            and self.signal == "clean"
            and self.record == "online"
        ):
            raise ValueError(
                "signal='clean' needs record='epoch': online recording only sees "
                "the training step's adversarial forward pass."
            )
        self._check_extrapolation()
        check_extrapolator(self.extrapolator)
        check_writable_dir(self.memory, "memory")
        check_writable_dir(self.checkpoint_dir, "checkpoint_dir")
        X = self._check_X(X, reset=True)
        codes, classes = encode_labels(y, X.shape[0])
        n, n_subset = X.shape[0], subset_count(self.subset_size, X.shape[0])
        if not len(classes) <= n_subset <= n:
            raise ValueError(
                f"subset_size must give between n_classes ({len(classes)}) and "
                f"n_samples ({n}) scored samples; got {self.subset_size!r} "
                f"({n_subset} samples)."
            )
        self._check_importance(len(classes))
        self._scan(X, bounds)
        check_embedding(self.embedding, X, n_subset)
        return X, codes, classes

    def _check_extrapolation(self):
        """The importance scores a strategy can estimate."""
        importance = self.importance
        if self.extrapolation == "confidence" and importance != "dynamic_uncertainty":
            raise ValueError(
                f"extrapolation='confidence' estimates dynamic uncertainty; for "
                f"importance={importance!r} use extrapolation='held_out', "
                f"'knn', 'class_knn' or 'learned'."
            )
        if (
            self.extrapolation == "held_out"
            and isinstance(importance, str)
            and requires_probas(importance)
        ):
            raise ValueError(
                f"extrapolation='held_out' computes importance from the tracked "
                f"true-class probabilities, which importance={importance!r} "
                f"cannot take (it needs class probabilities); use 'knn', "
                f"'class_knn' or 'learned'."
            )

    def _check_importance(self, n_classes):
        """Dry-run the score on dynamics of the shape the scoring run will
        record, so that a score that cannot work (too few epochs for its
        window, bad parameters, a callable returning the wrong shape) fails
        before any training."""
        n = 3
        P = np.linspace(0.2, 0.8, n * self.epochs).reshape(self.epochs, n)
        probas = np.full((self.epochs, n, n_classes), 1.0 / n_classes)
        dynamics = Dynamics(np.arange(n), P, P, probas, probas)
        try:
            if self.extrapolation == "confidence":
                confidence_scores(
                    P[-1] if self._attacks_pool() else None,
                    P,
                    [0],
                    y=np.arange(n) % n_classes,
                    **self._params(),
                )
            else:
                compute_score(
                    self.importance,
                    dynamics,
                    np.arange(n) % n_classes,
                    signal=self.signal,
                    **self._params(),
                )
        except (TypeError, ValueError) as exc:
            what = (
                "extrapolation='confidence'"
                if self.extrapolation == "confidence"
                else f"importance={self.importance!r}"
            )
            raise type(exc)(
                f"{what} with importance_params={self.importance_params!r} and "
                f"epochs={self.epochs} cannot be computed: {exc}"
            ) from exc

    def _check_X(self, X, *, reset):
        """Validate X without loading it: scikit-learn's checks on the first
        rows of the flattened samples (type, sparse, complex, empty, feature
        count and names) and the channel layout. Returns an array: X as given
        when it already is one (a memmap stays a memmap), else converted."""
        params = {"reset": reset, "dtype": "numeric", "ensure_all_finite": False}
        if hasattr(X, "columns"):  # a DataFrame: in memory, validated whole
            X = validate_data(self, X, **params)
        else:
            if (
                issparse(X)
                or not (hasattr(X, "shape") and hasattr(X, "dtype"))
                or X.dtype == object
            ):
                X = check_array(
                    X, allow_nd=True, dtype="numeric", ensure_all_finite=False
                )
            if len(X.shape) < 2 or X.shape[0] == 0:
                raise ValueError(
                    f"X must have shape (n_samples, n_features) or (n_samples, "
                    f"*sample_shape) with at least one sample; got shape {X.shape}."
                )
            # The first rows stand for all: scikit-learn counts the features
            # of the flattened samples, as the classifier does.
            head = np.asarray(X[:2])
            validate_data(self, head.reshape(len(head), -1), **params)
        check_channels_first(X)
        if reset:
            self.sample_shape_ = tuple(X.shape[1:])
        elif tuple(X.shape[1:]) != self.sample_shape_:
            raise ValueError(
                f"X must have samples of shape {self.sample_shape_}, as in fit; "
                f"got {tuple(X.shape[1:])}."
            )
        return X

    # -- the ratio-independent part: scores for every sample --------------------

    def _scan(self, X, bounds):
        """One pass over ``X`` for NaN, infinity and values outside
        ``bounds``; none for an ImageArray, whose rows lie in [0, 1]."""
        if not (isinstance(X, ImageArray) and _contains_unit_interval(bounds)):
            scan_rows(X, bounds=bounds, chunk_size=self.chunk_size)

    def _progress(self, total, desc):
        return progress_bar(total=total, desc=desc, unit="sample", verbose=self.verbose)

    def _embedding_kwargs(self):
        return {
            "batch_size": 4 * self.batch_size,
            "device": resolve_device(self.device),
        }

    def _fit_scores(self, X, codes):
        strategy = self.extrapolation
        measures_importance = strategy != "confidence"
        run = scoring_run(
            X,
            codes,
            subset_size=self.subset_size,
            model=self.model,
            record=self.record if measures_importance else None,
            record_probas=measures_importance
            and isinstance(self.importance, str)
            and requires_probas(self.importance),
            track_every=_TRACK_EVERY.get(strategy),
            track_adversarial=self._attacks_pool(),
            measure_attack_steps=self.attack_steps,
            min_steps=self.min_steps,
            require_every_class=self.class_balanced or strategy == "class_knn",
            random_state=self.random_state,
            memory=self.memory,
            checkpoint_dir=self.checkpoint_dir,
            verbose=self.verbose,
            **{
                **training_params(self),
                "attack_steps": self.train_attack_steps or self.attack_steps,
            },
        )
        subset = run.subset
        self.subset_indices_ = subset
        self.model_, self.dynamics_ = run.model, run.dynamics
        self.history_, self.tracking_ = run.history, run.tracking

        started = time.perf_counter()
        X_subset = np.asarray(X[subset], dtype=np.float32)
        self.embedding_ = fit_embedding(self.embedding, self.model_, X_subset)
        self.extrapolator_ = None
        embedding_seconds = 0.0
        if strategy == "confidence":
            self.scores_ = confidence_scores(
                run.tracking.adversarial,
                run.tracking.clean,
                subset,
                y=codes,
                **self._params(),
            )
        else:
            subset_scores = self._importance(run.dynamics, codes[subset])
            if strategy == "held_out":
                held_out = self._importance(
                    Dynamics(np.arange(len(codes)), None, clean=run.tracking.clean),
                    codes,
                    signal="clean",
                )
                self.scores_ = held_out_scores(held_out, subset, subset_scores)
            else:
                embedding_seconds = self._extrapolate(X, codes, subset, subset_scores)
        self.scored_mask_ = np.zeros(len(codes), dtype=bool)
        self.scored_mask_[subset] = True
        tracking_seconds = 0.0 if run.tracking is None else run.tracking.seconds
        self.timings_ = {
            "scoring": run.seconds - tracking_seconds,
            "tracking": tracking_seconds,
            "embedding": embedding_seconds,
            "extrapolation": time.perf_counter() - started - embedding_seconds,
        }
        self._fitted_extrapolation = strategy
        self.cost_ = self._cost(len(codes), len(subset), run.tracking)
        self.cost_["optimizer_steps"] = self.epochs * len(
            batch_slices(len(subset), run.batch_size)
        )

    def _importance(self, dynamics, codes, signal=None):
        return compute_score(
            self.importance,
            dynamics,
            codes,
            signal=self.signal if signal is None else signal,
            **self._params(),
        )

    def _params(self):
        return self.importance_params or {}

    def _attacks_pool(self):
        """Whether the scores read an attack on every sample after the run:
        the confidence strategy's, unless its ``clean_weight`` is 1."""
        if self.extrapolation != "confidence":
            return False
        default = signature(confidence_scores).parameters["clean_weight"].default
        return self._params().get("clean_weight", default) != 1

    def _extrapolate(self, X, codes, subset, subset_scores):
        """Scores of the unscored rows from a regressor on an embedding (the
        "knn", "class_knn" and "learned" strategies); returns the seconds spent
        embedding."""
        strategy = self.extrapolation
        # In a data-parallel run each process embeds and extrapolates its
        # share of the chunks, and all of them end with every score.
        rank, world_size = world()
        scores = None if world_size == 1 else np.full(len(codes), np.nan)
        # Each row is embedded once: the subset to fit on, the rest (this
        # process's chunks of it) to predict.
        rest = len(codes) - len(subset)
        chunk = self.chunk_size
        embedded = len(subset) + sum(
            min(chunk, rest - start)
            for start in range(rank * chunk, rest, world_size * chunk)
        )
        extrapolator = self.extrapolator
        with self._progress(embedded, "embedding") as bar:
            E = EmbeddedRows(
                X, self.embedding_, progress=bar, **self._embedding_kwargs()
            )
            features = E
            if strategy == "learned":
                features = _WithSeries(E, self.tracking_.clean)
                if extrapolator is None:
                    extrapolator = make_pipeline(StandardScaler(), RidgeCV())
            scores, self.extrapolator_ = extrapolate(
                features,
                subset,
                subset_scores,
                extrapolator=extrapolator,
                groups=codes if strategy == "class_knn" else None,
                chunk_size=self.chunk_size,
                n_jobs=self.n_jobs,
                out=scores,
                return_extrapolator=True,
                verbose=self.verbose,
                shard=(rank, world_size),
            )
        if world_size > 1:
            scores = merge_disjoint(scores, "AdversarialPruner.scores_")
        self.scores_ = scores
        return E.seconds

    def _cost(self, n, n_scored, tracking):
        """Forward-pass equivalents of each stage, and of scoring the whole
        pool directly (the paper's recording, ``attack_steps`` throughout)."""
        training = forward_passes(
            n_scored,
            self.epochs,
            method=self.method,
            attack_steps=self.train_attack_steps or self.attack_steps,
            record=self.record if self.extrapolation != "confidence" else None,
            record_attack_steps=self.attack_steps,
        )
        tracked = 0.0
        if tracking is not None:
            tracked = float(n * len(tracking.epochs))
            if tracking.adversarial is not None:
                tracked += n * (3 * self.attack_steps + 1)
        embedded = float(
            n
            if self.extrapolation in ("knn", "class_knn", "learned")
            and isinstance(self.embedding_, torch.nn.Module)
            else 0
        )
        direct = forward_passes(
            n,
            self.epochs,
            method=self.method,
            attack_steps=self.attack_steps,
            record="epoch",
        )
        total = training + tracked + embedded
        return {
            "scoring": training,
            "tracking": tracked,
            "embedding": embedded,
            "total": total,
            "direct": direct,
            "fraction_of_direct": total / direct,
        }

    # -- public API -------------------------------------------------------------

    def fit(self, X, y):
        """Score every sample and select the rows to keep.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, \
\\*sample_shape)
            Training pool; a read-only ``np.memmap`` is read chunk by chunk.
            Images live in [0, 1], channels first. Never modified.
        y : array-like of shape (n_samples,)
            Class labels of any kind (integers, strings); a column vector is
            raveled.

        Returns
        -------
        self : AdversarialPruner
        """
        X, codes, self.classes_ = self._check_inputs(X, y)
        self._fit_scores(X, codes)
        self.support_ = select(
            self.scores_,
            self.prune_ratio,
            rule=self.selection,
            y=codes,
            class_balanced=self.class_balanced,
            random_state=self.random_state,
        )
        self.sample_indices_ = np.flatnonzero(self.support_)
        return self

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
        X_kept : ndarray or DataFrame of shape (n_kept, ...)
            A DataFrame (index preserved) when ``X`` is one.
        """
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.split(".")[0] == "imblearn":
            # imbalanced-learn's Pipeline calls fit_transform on every step that
            # has it, so it would prune X and leave y whole.
            raise TypeError(
                "imbalanced-learn's Pipeline calls fit_transform, which prunes X "
                "but not y; build the pipeline with advprune.make_pipeline (or "
                "advprune.pipeline.Pipeline), which calls fit_resample at fit time "
                "and skips pruning at predict time."
            )
        return self.fit_resample(X, y)[0]

    def fit_resample(self, X, y):
        """Fit, then return the kept rows of ``X`` and ``y``.

        Returns
        -------
        X_kept : ndarray or DataFrame of shape (n_kept, ...)
            A DataFrame (index preserved) when ``X`` is one.
        y_kept : ndarray or Series of shape (n_kept,)
            A Series (index preserved) when ``y`` is one.
        """
        self.fit(X, y)
        kept = self.sample_indices_
        if hasattr(X, "iloc"):
            X_kept = X.iloc[kept]
        else:
            X_kept = np.asarray((X if hasattr(X, "shape") else np.asarray(X))[kept])
        if hasattr(y, "iloc"):
            return X_kept, y.iloc[kept]
        y = np.asarray(y)
        return X_kept, (y.ravel() if y.ndim == 2 else y)[kept]

    @available_if(_fitted_knn)
    def score_samples(self, X):
        """Extrapolated importance of new samples (higher = more important).

        Embeds ``X`` with the fitted embedding and predicts with the fitted
        extrapolator, chunk by chunk, e.g. to rank a fresh batch of generated
        data without another scoring run. Only for a pruner fitted (or, before
        fitting, set) with ``extrapolation="knn"``: the other strategies score
        a sample from predictions recorded during the scoring run, which a new
        sample does not have.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        check_is_fitted(self, "extrapolator_")
        X = self._check_X(X, reset=False)
        self._scan(X, None)
        scores = np.empty(X.shape[0], dtype=np.float64)
        with self._progress(X.shape[0], "scoring new samples") as bar:
            E = EmbeddedRows(
                X, self.embedding_, progress=bar, **self._embedding_kwargs()
            )
            for start in range(0, X.shape[0], self.chunk_size):
                rows = slice(start, start + self.chunk_size)
                scores[rows] = self.extrapolator_.predict(E[rows])
        return scores

    def embed(self, X, out=None):
        """The fitted embedding of ``X``, the space the scores are extrapolated in.

        A network embedding (the default, ``embedding="model"``) streams
        ``X`` batch by batch into ``out``, read on host threads ahead of a
        GPU; the other embeddings are computed ``chunk_size`` rows at a time.
        Either way a memory-mapped ``X`` and a memory-mapped ``out`` keep
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
        self._scan(X, None)
        with self._progress(X.shape[0], "embedding") as bar:
            if isinstance(self.embedding_, torch.nn.Module):
                # One stream of batches into out, read ahead of the device.
                return embed(
                    self.embedding_,
                    X,
                    progress=bar,
                    out=out,
                    **self._embedding_kwargs(),
                )
            for start in range(0, X.shape[0], self.chunk_size):
                E = embed(
                    self.embedding_,
                    X[start : start + self.chunk_size],
                    progress=bar,
                    **self._embedding_kwargs(),
                )
                if out is None:
                    out = np.empty((X.shape[0], E.shape[1]), dtype=np.float32)
                out[start : start + len(E)] = E
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.three_d_array = True
        tags.non_deterministic = self.random_state is None
        return tags


def _contains_unit_interval(bounds):
    """Whether images scaled to [0, 1] lie inside ``bounds``."""
    return bounds is None or (bounds[0] <= 0.0 and bounds[1] >= 1.0)


class _WithSeries:
    """Rows of an embedding followed by the same samples' tracked series: the
    features of the "learned" strategy, computed as they are read."""

    def __init__(self, E, series):
        self.E = E
        self.series = series
        self.shape = (E.shape[0], E.shape[1] + series.shape[0])

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, rows):
        return np.hstack([self.E[rows], self.series[:, rows].T])
