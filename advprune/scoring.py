"""Stages 1-2 of the method: the scoring run on a random subset of the pool.

:func:`scoring_run` draws a class-stratified random subset, builds the scoring
network, trains it adversarially on the subset and records the training
dynamics of every subset sample after each epoch. It is the one place where a
seed becomes a subset, an initialisation and a training run, so that
:class:`advprune.AdversarialPruner`, ``advprune score`` and the benchmarks give
the same scores for the same settings and seed.
"""

import inspect
import math
import time
from dataclasses import dataclass, replace
from numbers import Integral

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_memory

from ._validation import check_model_output
from .models import _fingerprint, build_model
from .selection import stratified_subset
from .training import AdversarialTrainer, Dynamics, PoolTracker
from .training._augment import stable_identity
from .training._batches import batch_slices
from .training._tracking import pool_key

__all__ = ["ScoringRun", "Tracking", "forward_passes", "scoring_run", "subset_count"]

# The floor of a batch cut by min_steps: a handful of samples, so that
# optimizer steps and batch statistics stay meaningful.
_MIN_BATCH_SIZE = 8

_TRAINER_DEFAULTS = {
    name: inspect.signature(AdversarialTrainer).parameters[name].default
    for name in ("epochs", "batch_size")
}


@dataclass
class Tracking:
    """The subset model's predictions on every pool sample during a scoring run.

    Attributes
    ----------
    epochs : ndarray of shape (n_tracked,)
        The 0-based epochs after which the pool was tracked.
    clean : ndarray of shape (n_tracked, n_samples), float32
        Clean true-class probabilities of every sample of ``X`` (eval mode):
        held out for the samples outside the subset, training values for the
        subset.
    adversarial : ndarray of shape (n_samples,), float32, or None
        True-class probabilities under PGD after the last epoch.
    seconds : float
        Wall time spent tracking (0 when the run was loaded from a ``memory``
        cache).

    Examples
    --------
    >>> import numpy as np
    >>> from advprune.scoring import scoring_run
    >>> X = np.random.default_rng(0).random((60, 3)).astype("float32")
    >>> run = scoring_run(X, X[:, 0] > 0.5, subset_size=20, epochs=4,
    ...                   attack_steps=1, device="cpu", random_state=0,
    ...                   track_every=2, track_adversarial=True)
    >>> run.tracking.epochs.tolist(), run.tracking.clean.shape
    ([1, 3], (2, 60))
    """

    epochs: np.ndarray
    clean: np.ndarray
    adversarial: np.ndarray | None
    seconds: float


@dataclass
class ScoringRun:
    """What a scoring run returns.

    Attributes
    ----------
    subset : ndarray of shape (n_scored,)
        Sorted rows of ``X`` that were trained on and recorded.
    model : torch.nn.Module
        The trained scoring network, in eval mode, on the CPU.
    dynamics : advprune.training.Dynamics or None
        The recording; its columns follow ``subset``. None with
        ``record=None``.
    history : list of dict
        Per epoch: training loss, training (adversarial) accuracy, seconds.
    classes : ndarray of shape (n_classes,)
        The class labels; the network's column ``k`` is ``classes[k]``.
    seconds : float
        Wall time of the run (for a ``memory`` cache hit, of loading it).
    batch_size : int
        The training batch size used (cut by ``min_steps``).
    tracking : Tracking or None
        The pool tracking, with ``track_every``.

    Examples
    --------
    >>> import numpy as np
    >>> from advprune.scoring import scoring_run
    >>> X = np.random.default_rng(0).random((60, 3)).astype("float32")
    >>> run = scoring_run(X, X[:, 0] > 0.5, subset_size=20, epochs=2,
    ...                   attack_steps=1, device="cpu", random_state=0)
    >>> len(run.subset), len(run.history), run.model.training
    (20, 2, False)
    """

    subset: np.ndarray
    model: torch.nn.Module
    dynamics: Dynamics | None
    history: list
    classes: np.ndarray
    seconds: float
    batch_size: int
    tracking: Tracking | None


def forward_passes(
    n_samples,
    epochs,
    *,
    method="pgd",
    attack_steps=10,
    record=None,
    record_attack_steps=None,
):
    """Cost of an adversarial training run, in forward-pass equivalents.

    A count that transfers between machines, where seconds do not: a forward
    pass of one sample is 1, its backward pass 2. A PGD-k training step costs
    ``3 * (k + 1)`` per sample (k attack steps and the update, each a forward
    and a backward pass), TRADES ``3 * (k + 2)`` (its clean forward and
    backward pass on top), standard training 3; recording after every epoch
    (``record="epoch"``) adds a PGD attack and two forward passes,
    ``3 * k + 2`` per recorded sample. The batch size does not count: the same
    sample passes cost the same, in any number of steps.

    Parameters
    ----------
    n_samples : int
        Samples trained on (and recorded).
    epochs : int
    method : {"pgd", "trades", "standard"}, default="pgd"
    attack_steps : int, default=10
        PGD steps of the training attack.
    record : {"epoch", "online"} or None, default=None
        ``"online"`` and ``None`` cost nothing extra.
    record_attack_steps : int or None, default=None
        PGD steps of the recording's attack; ``None``: ``attack_steps``.

    Returns
    -------
    float

    Examples
    --------
    The direct reference run of the digits benchmark, 2,000 samples, 15
    epochs of PGD-5 training with the paper's recording:

    >>> from advprune.scoring import forward_passes
    >>> forward_passes(2000, 15, attack_steps=5, record="epoch")
    1050000.0
    """
    per_sample = {
        "pgd": 3 * (attack_steps + 1),
        "trades": 3 * (attack_steps + 2),
        "standard": 3,
    }[method]
    if record == "epoch":
        per_sample += 3 * (record_attack_steps or attack_steps) + 2
    return float(n_samples * epochs * per_sample)


def subset_count(subset_size, n_samples):
    """Number of samples scored directly: ``subset_size`` as a count, or as a
    fraction of ``n_samples`` (rounded).

    Examples
    --------
    >>> from advprune.scoring import subset_count
    >>> subset_count(0.1, 2000), subset_count(150, 2000)
    (200, 150)
    """
    if isinstance(subset_size, Integral):
        return int(subset_size)
    return round(subset_size * n_samples)


def scoring_run(
    X,
    y,
    *,
    subset_size=0.1,
    model=None,
    record="epoch",
    record_probas=False,
    track_every=None,
    track_adversarial=False,
    measure_attack_steps=None,
    min_steps=None,
    require_every_class=False,
    random_state=None,
    memory=None,
    checkpoint_dir=None,
    verbose=False,
    **training,
):
    """Adversarially train on a random subset of ``X`` and record its dynamics.

    The subset is class-stratified (:func:`advprune.selection.stratified_subset`);
    one ``random_state`` seeds the subset, the network's initialisation and the
    training run, in that order. Before any training the network is tried on
    two samples, so that one of the wrong input shape or output width fails
    first.

    Parameters
    ----------
    X : array-like of shape (n_samples, ...)
        The pool; only the subset's rows are read (a memory map stays on disk).
    y : array-like of shape (n_samples,)
        Class labels of any kind; the network gets one output per class of
        ``y``.
    subset_size : float in (0, 1] or int, default=0.1
        Samples scored: a fraction of ``n_samples`` or a count.
    model : None, str or torch.nn.Module, default=None
        The scoring network, as :func:`advprune.models.build_model` takes it.
    record : {"epoch", "online"} or None, default="epoch"
        ``"epoch"``: the paper's protocol, clean and PGD true-class
        probabilities of the subset in eval mode after every epoch.
        ``"online"``: read off the training step (adversarial only, nearly
        free). ``None``: no recording.
    record_probas : bool, default=False
        Also record the class probabilities (float16), for the scores of
        :func:`advprune.scores.requires_probas`.
    track_every : int or None, default=None
        Track the whole of ``X`` with :class:`advprune.training.PoolTracker`
        after every ``track_every``-th epoch and the last one: one clean
        forward pass per sample and tracked epoch. ``None``: no tracking.
    track_adversarial : bool, default=False
        With tracking, also attack every sample of ``X`` once after the last
        epoch (PGD with the run's ``eps``).
    measure_attack_steps : int or None, default=None
        PGD steps of the attacks that measure samples rather than train on
        them (the epoch recording and the tracking's adversarial pass);
        ``None``: the training attack's ``attack_steps``.
    min_steps : int or None, default=None
        A floor on the optimizer steps of the run: the batch size is cut, at
        the same number of epochs (so the same sample passes), until the run
        takes at least ``min_steps`` steps, but not below 8 samples (so a very
        small subset takes fewer steps). A 200-sample subset at batch 128 takes
        2 steps per epoch, too few to learn from.
    require_every_class : bool, default=False
        Refuse, before training, a subset that holds no sample of some class
        (class-balanced selection needs scored samples of every class).
    random_state : int, RandomState or None, default=None
    memory : str, joblib.Memory or None, default=None
        Caches the training run on the subset's data and every parameter that
        changes it (``augment`` by its name or repr, as a checkpoint
        identifies it).
    checkpoint_dir : str, path or None, default=None
        Per-epoch checkpoints to resume an interrupted run from.
    verbose : bool, default=False
        A progress bar over epochs.
    **training
        Parameters of :class:`advprune.training.AdversarialTrainer` (``epochs``,
        ``eps``, ``attack_steps``, ``lr``, ...).

    Returns
    -------
    ScoringRun

    Examples
    --------
    >>> import numpy as np
    >>> from advprune.scoring import scoring_run
    >>> from advprune.scores import compute_score
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((200, 4)).astype("float32")
    >>> y = np.where(X[:, 0] > 0.5, "high", "low")
    >>> run = scoring_run(X, y, subset_size=0.2, epochs=4, eps=0.05,
    ...                   attack_steps=2, device="cpu", random_state=0)
    >>> run.subset.shape, run.dynamics.adversarial.shape, run.classes.tolist()
    ((40,), (4, 40), ['high', 'low'])
    >>> codes = np.searchsorted(run.classes, y[run.subset])
    >>> compute_score("dynamic_uncertainty", run.dynamics, codes, window=2).shape
    (40,)
    """
    classes, y_codes = np.unique(np.asarray(y), return_inverse=True)
    rng = check_random_state(random_state)
    subset = stratified_subset(
        y_codes, subset_count(subset_size, len(y_codes)), random_state=rng
    )
    if require_every_class and len(np.unique(y_codes[subset])) < len(classes):
        missing = np.setdiff1d(np.arange(len(classes)), y_codes[subset])
        raise ValueError(
            f"the scored subset (subset_size={subset_size!r}) holds no sample of "
            f"classes {classes[missing].tolist()}; score more samples."
        )
    init_seed, train_seed = (int(s) for s in rng.randint(2**31 - 1, size=2))
    X_subset = np.asarray(X[subset], dtype=np.float32)
    network = build_model(
        model, X_subset.shape[1:], len(classes), random_state=init_seed
    )
    check_model_output(network, X_subset[:2], len(classes))
    training = {**_TRAINER_DEFAULTS, **training}
    if min_steps is not None:
        training["batch_size"] = _batch_size_for_steps(
            len(subset), training["batch_size"], min_steps, training["epochs"]
        )
    tracker = None
    if track_every is not None:
        tracker = PoolTracker(
            X,
            y_codes,
            every=track_every,
            adversarial=track_adversarial,
            attack_steps=measure_attack_steps,
            random_state=train_seed,
        )

    # The cache keys the model by its weights and augment by the identity a
    # checkpoint uses: joblib cannot hash a lambda or a local function.
    train = check_memory(memory).cache(
        _train_subset,
        ignore=["model", "augment", "tracker", "verbose", "checkpoint_dir"],
    )
    augment = training.pop("augment", None)
    started = time.perf_counter()
    trained, dynamics, history, tracking = train(
        X_subset,
        y_codes[subset].astype(np.int64),
        network,
        _fingerprint(network),
        augment,
        stable_identity(augment),
        training,
        record,
        record_probas,
        measure_attack_steps,
        tracker,
        None
        if tracker is None
        else [pool_key(X, y_codes), track_every, track_adversarial],
        train_seed,
        verbose,
        checkpoint_dir,
    )
    if tracking is not None:
        # The tracker starts its clock only when this call trains; a run
        # loaded from the cache spent no time tracking.
        tracking = replace(tracking, seconds=getattr(tracker, "seconds_", 0.0))
    return ScoringRun(
        subset=subset,
        model=trained,
        dynamics=dynamics,
        history=history,
        classes=classes,
        seconds=time.perf_counter() - started,
        batch_size=training["batch_size"],
        tracking=tracking,
    )


def _batch_size_for_steps(n_samples, batch_size, min_steps, epochs):
    """The largest batch size up to ``batch_size``, and not below
    ``_MIN_BATCH_SIZE``, with which ``epochs`` passes over ``n_samples`` take at
    least ``min_steps`` optimizer steps."""
    steps_per_epoch = math.ceil(min_steps / epochs)
    batch_size = min(batch_size, max(1, math.ceil(n_samples / steps_per_epoch)))
    while batch_size > 1 and len(batch_slices(n_samples, batch_size)) < steps_per_epoch:
        batch_size -= 1
    return max(batch_size, min(_MIN_BATCH_SIZE, n_samples))


def _train_subset(
    X_subset,
    y_subset,
    model,
    model_key,
    augment,
    augment_key,
    training,
    record,
    record_probas,
    measure_attack_steps,
    tracker,
    tracker_key,
    seed,
    verbose,
    checkpoint_dir,
):
    """The training run itself; a module-level function so that
    ``joblib.Memory`` can cache it on its arguments (the model through
    ``model_key``, the augmentation through ``augment_key``, the tracked pool
    through ``tracker_key``)."""
    trainer = AdversarialTrainer(
        model, augment=augment, random_state=seed, verbose=verbose, **training
    )
    dynamics = trainer.fit(
        X_subset,
        y_subset,
        record=record,
        record_probas=record_probas,
        record_attack_steps=measure_attack_steps,
        callbacks=() if tracker is None else (tracker,),
        checkpoint_dir=checkpoint_dir,
    )
    trainer.model.cpu().eval()
    tracking = None
    if tracker is not None:
        tracking = Tracking(
            epochs=tracker.epochs_,
            clean=tracker.series_,
            adversarial=tracker.adversarial_,
            seconds=tracker.seconds_,
        )
    return trainer.model, dynamics, trainer.history_, tracking
