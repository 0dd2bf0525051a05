"""The adversarial training engine and the recording of training dynamics.

One small loop, :class:`AdversarialTrainer`, trains any ``torch.nn.Module``
classifier adversarially (PGD-AT of Madry et al. 2018, or TRADES of Zhang et al.
2019). Everything around the loop is a :class:`Callback`: the progress bar and
the two recorders of training dynamics that the importance scores are computed
from.

* ``record="epoch"`` (the paper's protocol): after every epoch, the model in
  eval mode, the recorded samples unaugmented, the true-class probability on the
  clean input and on a fresh PGD input against the current model. It costs about
  one more (attack) pass over the recorded samples per epoch.
* ``record="online"``: the true-class probability of each sample's training-time
  adversarial forward pass, read off the batch the optimizer already computed.
  Nearly free, but the model is in train mode, the input may be augmented, and
  the model changes during the epoch. There is no clean series in this mode.

The same engine trains the scoring run of the pruner and the
``AdversarialClassifier``; the loop is hand-written rather than built on skorch
because recording needs each batch's sample indices and the adversarial logits
of the training step, which skorch's iterator and ``train_step`` do not expose
without overriding most of both.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path

import joblib
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ._io import replacing
from .attacks import pgd

__all__ = [
    "AdversarialTrainer",
    "Callback",
    "Dynamics",
    "EpochRecorder",
    "OnlineRecorder",
    "RandomCropFlip",
    "batched_forward",
    "resolve_device",
    "torch_generator",
]

_METHODS = ("pgd", "trades", "standard")
_OPTIMIZERS = ("sgd", "adam")
_SCHEDULES = ("cosine", "multistep", "constant")
_RECORD_MODES = ("epoch", "online")


def resolve_device(device="auto"):
    """Return the ``torch.device`` to train on.

    Parameters
    ----------
    device : str or torch.device, default="auto"
        ``"auto"`` picks CUDA when it is available, else the CPU. Anything else
        is passed to ``torch.device``.

    Returns
    -------
    torch.device

    Examples
    --------
    >>> from advprune.training import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or a torch.device; got {device!r}."
        ) from exc


def torch_generator(random_state=None):
    """Return a CPU ``torch.Generator`` seeded from a scikit-learn style seed.

    Parameters
    ----------
    random_state : int, numpy.random.RandomState or None, default=None
        ``None`` draws a fresh seed from numpy's global generator, so that
        ``np.random.seed`` makes the run reproducible as in scikit-learn.

    Returns
    -------
    torch.Generator

    Examples
    --------
    >>> import torch
    >>> from advprune.training import torch_generator
    >>> g = torch_generator(0)
    >>> int(torch.randint(10, (1,), generator=g))
    4
    """
    if isinstance(random_state, Integral):
        seed = int(random_state)
    else:
        rng = (
            random_state
            if isinstance(random_state, np.random.RandomState)
            else np.random.mtrand._rand
        )
        seed = int(rng.randint(np.iinfo(np.int32).max))
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


class RandomCropFlip:
    """Random crop after zero padding, and random horizontal flip, per image.

    The standard augmentation of adversarial training on CIFAR-10 (as in Rice
    et al., 2020, and the runs of Nieth et al., 2024): each image of a batch is
    padded by ``padding`` zero pixels on every side, cropped back to its size at
    a random offset, and mirrored left-right with probability 1/2. Pass an
    instance as ``augment`` to :class:`AdversarialTrainer`,
    :class:`advprune.AdversarialClassifier` or :class:`advprune.AdversarialPruner`.
    It applies to training batches only, never to recordings or predictions.

    Parameters
    ----------
    padding : int, default=4
        Zero pixels added on each side before cropping; 0 disables the crop.
    flip : bool, default=True
        Whether to mirror images left-right at random.

    Examples
    --------
    >>> import torch
    >>> from advprune.training import RandomCropFlip, torch_generator
    >>> augment = RandomCropFlip(padding=2)
    >>> x = torch.rand(8, 3, 32, 32)
    >>> out = augment(x, torch_generator(0))
    >>> out.shape
    torch.Size([8, 3, 32, 32])
    >>> bool(((out == 0) | torch.isin(out, x)).all())
    True
    """

    def __init__(self, padding=4, flip=True):
        if not isinstance(padding, Integral) or isinstance(padding, bool):
            raise TypeError(f"padding must be an int; got {padding!r}.")
        if padding < 0:
            raise ValueError(f"padding must be an int >= 0; got {padding!r}.")
        if not isinstance(flip, bool):
            raise TypeError(f"flip must be a bool; got {flip!r}.")
        self.padding = int(padding)
        self.flip = flip

    def __repr__(self):
        return f"RandomCropFlip(padding={self.padding}, flip={self.flip})"

    def __call__(self, x, generator):
        """Augment a batch ``x`` of shape (n, channels, height, width).

        Offsets and flips are drawn on the CPU from ``generator``, so a seeded run
        is reproducible on any device; the images stay on ``x``'s device.
        """
        if x.ndim != 4:
            raise ValueError(
                "RandomCropFlip augments image batches of shape (n, channels, "
                f"height, width); got shape {tuple(x.shape)}."
            )
        n, channels, height, width = x.shape
        pad = self.padding
        row_offsets = torch.randint(2 * pad + 1, (n, 1), generator=generator)
        col_offsets = torch.randint(2 * pad + 1, (n, 1), generator=generator)
        rows = row_offsets + torch.arange(height)
        cols = col_offsets + torch.arange(width)
        if self.flip:
            mirrored = torch.rand(n, 1, generator=generator) < 0.5
            cols = torch.where(mirrored, cols.flip(1), cols)
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        rows, cols = rows.to(x.device), cols.to(x.device)
        return padded[
            torch.arange(n, device=x.device)[:, None, None, None],
            torch.arange(channels, device=x.device)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]


@torch.no_grad()
def batched_forward(model, X, *, batch_size=512, device="cpu", transform=None):
    """Apply ``model`` (or ``transform(model, batch)``) to ``X`` in batches.

    The model's train/eval mode is left as it is: callers that want inference
    behaviour put the model in eval mode first. ``X`` is read batch by batch, so
    a memory-mapped array is never loaded whole.

    Parameters
    ----------
    model : torch.nn.Module
    X : array-like of shape (n_samples, ...)
    batch_size : int, default=512
    device : str or torch.device, default="cpu"
    transform : callable or None, default=None
        ``transform(model, x_batch) -> tensor``; ``None`` calls ``model(x)``.

    Returns
    -------
    numpy.ndarray of shape (n_samples, ...), float32

    Examples
    --------
    >>> import numpy as np, torch
    >>> from advprune.training import batched_forward
    >>> model = torch.nn.Linear(3, 2)
    >>> batched_forward(model, np.zeros((5, 3)), batch_size=2).shape
    (5, 2)
    """
    device = torch.device(device)
    outputs = []
    for start in range(0, len(X), batch_size):
        # np.array copies, so a read-only memmap's batch becomes writable.
        batch = torch.from_numpy(
            np.array(X[start : start + batch_size], dtype=np.float32)
        ).to(device)
        out = model(batch) if transform is None else transform(model, batch)
        outputs.append(out.float().cpu().numpy())
    if not outputs:
        raise ValueError("X must contain at least one sample.")
    return np.concatenate(outputs)


@dataclass
class Dynamics:
    """Per-epoch training dynamics of the recorded samples.

    Attributes
    ----------
    indices : ndarray of shape (n_recorded,)
        Row indices, into the training data, of the recorded samples.
    adversarial : ndarray of shape (n_epochs, n_recorded), float32
        True-class probability on the adversarial input, after each epoch.
    clean : ndarray of shape (n_epochs, n_recorded), float32, or None
        True-class probability on the clean input (``record="epoch"`` only).
    adversarial_probas, clean_probas : ndarray of shape (n_epochs, n_recorded, \
n_classes), float16, or None
        Full class probabilities, kept when ``record_probas=True``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from advprune.training import AdversarialTrainer, Dynamics
    >>> X = np.random.default_rng(0).uniform(size=(40, 2)).astype("float32")
    >>> y = (X[:, 0] > 0.5).astype("int64")
    >>> trainer = AdversarialTrainer(torch.nn.Linear(2, 2), eps=0.05, epochs=3,
    ...                              batch_size=10, device="cpu", random_state=0)
    >>> dynamics = trainer.fit(X, y, record_indices=[0, 5, 7], record="epoch")
    >>> isinstance(dynamics, Dynamics), dynamics.adversarial.shape
    (True, (3, 3))
    >>> dynamics.indices.tolist(), dynamics.adversarial_probas is None
    ([0, 5, 7], True)
    """

    indices: np.ndarray
    adversarial: np.ndarray
    clean: np.ndarray | None = None
    adversarial_probas: np.ndarray | None = None
    clean_probas: np.ndarray | None = None


class Callback:
    """Hooks into :class:`AdversarialTrainer`'s loop; each one does nothing.

    Subclass and override the hooks you need. ``trainer`` is the running
    :class:`AdversarialTrainer`; its ``model``, ``device_`` and ``epoch_`` are
    available.

    Examples
    --------
    A callback that counts the samples seen in each epoch:

    >>> import numpy as np, torch
    >>> from advprune.training import AdversarialTrainer, Callback
    >>> X = np.random.default_rng(0).uniform(size=(40, 2)).astype("float32")
    >>> y = (X[:, 0] > 0.5).astype("int64")
    >>> trainer = AdversarialTrainer(torch.nn.Linear(2, 2), eps=0.05, epochs=3,
    ...                              batch_size=10, device="cpu", random_state=0)
    >>> class SeenPerEpoch(Callback):
    ...     def on_train_begin(self, trainer, X, y):
    ...         self.seen = [0] * trainer.epochs
    ...     def on_batch_end(self, trainer, indices, logits, y):
    ...         self.seen[trainer.epoch_] += len(indices)
    >>> counter = SeenPerEpoch()
    >>> _ = trainer.fit(X, y, record=None, callbacks=[counter])
    >>> counter.seen
    [40, 40, 40]
    """

    def on_train_begin(self, trainer, X, y):
        """Called once before the first epoch with the training tensors."""

    def on_batch_end(self, trainer, indices, logits, y):
        """Called after each optimizer step with the batch's sample indices,
        the logits of the training forward pass (adversarial for PGD-AT and
        TRADES) and the batch labels."""

    def on_epoch_end(self, trainer, epoch):
        """Called after each epoch (0-based ``epoch``)."""

    def on_train_end(self, trainer):
        """Called once after the last epoch."""


class _Recorder(Callback):
    """Shared storage of the two recorders: a float32 series per signal and,
    on request, float16 class probabilities."""

    def __init__(self, indices, *, record_probas=False):
        self.indices = np.asarray(indices, dtype=np.int64)
        self.record_probas = record_probas

    def _allocate(self, trainer, n_classes, signals):
        n_epochs, n = trainer.epochs, len(self.indices)
        self.series_ = {s: np.full((n_epochs, n), np.nan, np.float32) for s in signals}
        self.probas_ = {
            s: np.zeros((n_epochs, n, n_classes), np.float16)
            if self.record_probas
            else None
            for s in signals
        }

    def _store(self, signal, epoch, positions, probas, y):
        probas = probas.float()
        true = probas.gather(1, y[:, None]).squeeze(1)
        self.series_[signal][epoch, positions] = true.cpu().numpy()
        if self.record_probas:
            self.probas_[signal][epoch, positions] = probas.cpu().numpy()

    def state_dict(self):
        """What a checkpoint needs to resume the recording (tensors only, so
        that it loads with ``torch.load(weights_only=True)``)."""
        state = {"series": {k: torch.from_numpy(v) for k, v in self.series_.items()}}
        if self.record_probas:
            state["probas"] = {k: torch.from_numpy(v) for k, v in self.probas_.items()}
        return state

    def load_state_dict(self, state):
        for name, values in state["series"].items():
            self.series_[name][...] = values.numpy()
        if self.record_probas:
            for name, values in state["probas"].items():
                self.probas_[name][...] = values.numpy()

    def dynamics(self):
        """The recording as :class:`Dynamics`."""
        return Dynamics(
            indices=self.indices,
            adversarial=self.series_["adversarial"],
            clean=self.series_.get("clean"),
            adversarial_probas=self.probas_["adversarial"],
            clean_probas=self.probas_.get("clean"),
        )


class EpochRecorder(_Recorder):
    """Record clean and PGD true-class probabilities after every epoch.

    The paper's protocol: model in eval mode, no augmentation, PGD with the
    trainer's own budget (``eps``, ``norm``, ``attack_steps``, cross-entropy)
    against the current model. The random starts draw from their own generator
    so that recording does not change the training run.

    Parameters
    ----------
    indices : array-like of int
        Rows of the training data to record.
    record_probas : bool, default=False
        Also keep the full class probabilities (float16).
    random_state : int or None, default=None
        Seed of the attack's random starts.

    Examples
    --------
    ``trainer.fit(X, y, record="epoch")`` uses this recorder; as an extra
    callback it records a second series, here of three rows with their class
    probabilities:

    >>> import numpy as np, torch
    >>> from advprune.training import AdversarialTrainer, EpochRecorder
    >>> X = np.random.default_rng(0).uniform(size=(40, 2)).astype("float32")
    >>> y = (X[:, 0] > 0.5).astype("int64")
    >>> trainer = AdversarialTrainer(torch.nn.Linear(2, 2), eps=0.05, epochs=3,
    ...                              batch_size=10, device="cpu", random_state=0)
    >>> recorder = EpochRecorder([1, 2, 3], record_probas=True, random_state=0)
    >>> _ = trainer.fit(X, y, record=None, callbacks=[recorder])
    >>> recording = recorder.dynamics()
    >>> recording.clean.shape, recording.adversarial_probas.shape
    ((3, 3), (3, 3, 2))
    >>> bool((recording.adversarial <= 1).all())
    True
    """

    def __init__(self, indices, *, record_probas=False, random_state=None):
        super().__init__(indices, record_probas=record_probas)
        self.random_state = random_state

    def on_train_begin(self, trainer, X, y):
        self._X, self._y = X, y
        self._generator = torch_generator(self.random_state)
        self._allocate(trainer, trainer.n_classes_, ("adversarial", "clean"))

    def on_epoch_end(self, trainer, epoch):
        model = trainer.model
        was_training = model.training
        model.eval()
        step = trainer.batch_size
        for start in range(0, len(self.indices), step):
            positions = np.arange(start, min(start + step, len(self.indices)))
            rows = torch.as_tensor(self.indices[positions])
            xb = self._X[rows].to(trainer.device_, non_blocking=True)
            yb = self._y[rows].to(trainer.device_, non_blocking=True)
            x_adv = trainer.attack(xb, yb, generator=self._generator)
            with torch.no_grad(), trainer.autocast():
                clean = F.softmax(model(xb).float(), dim=1)
                adversarial = F.softmax(model(x_adv).float(), dim=1)
            self._store("clean", epoch, positions, clean, yb)
            self._store("adversarial", epoch, positions, adversarial, yb)
        model.train(was_training)

    def on_train_end(self, trainer):
        del self._X, self._y

    def state_dict(self):
        return {**super().state_dict(), "generator": self._generator.get_state()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self._generator.set_state(state["generator"])


class OnlineRecorder(_Recorder):
    """Record the true-class probability of each training-time forward pass.

    Reads the logits of the adversarial forward pass that the optimizer step
    already computed (train mode, augmented input, model mid-epoch), so it
    costs nearly nothing. Only the adversarial series exists in this mode.

    Parameters
    ----------
    indices : array-like of int
        Rows of the training data to record.
    record_probas : bool, default=False
        Also keep the full class probabilities (float16).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from advprune.training import AdversarialTrainer, OnlineRecorder
    >>> X = np.random.default_rng(0).uniform(size=(40, 2)).astype("float32")
    >>> y = (X[:, 0] > 0.5).astype("int64")
    >>> trainer = AdversarialTrainer(torch.nn.Linear(2, 2), eps=0.05, epochs=3,
    ...                              batch_size=10, device="cpu", random_state=0)
    >>> recorder = OnlineRecorder(np.arange(40))
    >>> _ = trainer.fit(X, y, record=None, callbacks=[recorder])
    >>> recording = recorder.dynamics()
    >>> recording.adversarial.shape, recording.clean is None
    ((3, 40), True)
    """

    def on_train_begin(self, trainer, X, y):
        self._allocate(trainer, trainer.n_classes_, ("adversarial",))
        self._position = np.full(len(X), -1, dtype=np.int64)
        self._position[self.indices] = np.arange(len(self.indices))

    def on_batch_end(self, trainer, indices, logits, y):
        positions = self._position[indices.numpy()]
        wanted = positions >= 0
        if not wanted.any():
            return
        selected = torch.as_tensor(wanted, device=logits.device)
        probas = F.softmax(logits.detach()[selected].float(), dim=1)
        self._store(
            "adversarial", trainer.epoch_, positions[wanted], probas, y[selected]
        )


class _ProgressBar(Callback):
    def on_train_begin(self, trainer, X, y):
        self._bar = tqdm(
            total=trainer.epochs, desc="adversarial training", unit="epoch"
        )

    def on_epoch_end(self, trainer, epoch):
        self._bar.set_postfix(trainer.history_[-1] if trainer.history_ else {})
        self._bar.update()

    def on_train_end(self, trainer):
        self._bar.close()


class _Checkpoint:
    """Atomic per-epoch checkpoints of a training run, and their restoring."""

    FILE = "checkpoint.pt"

    def __init__(self, directory, run_key):
        self.path = Path(directory) / self.FILE
        self.run_key = run_key
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(
                f"checkpoint_dir {str(directory)!r} cannot be created: {exc}"
            ) from exc
        if not os.access(self.path.parent, os.W_OK):
            raise ValueError(f"checkpoint_dir {str(directory)!r} is not writable.")

    def save(self, trainer, recorder):
        state = {
            "run_key": self.run_key,
            "epoch": trainer.epoch_,
            "model": trainer.model.state_dict(),
            "optimizer": trainer.optimizer_.state_dict(),
            "scheduler": trainer.scheduler_.state_dict(),
            "scaler": trainer.scaler_.state_dict(),
            "generator": trainer.generator_.get_state(),
            "history": trainer.history_,
            "recorder": None if recorder is None else recorder.state_dict(),
        }
        with replacing(self.path) as temporary, open(temporary, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())

    def restore(self, trainer, recorder):
        """Load the saved state into ``trainer``; return the first epoch to run."""
        if not self.path.exists():
            return 0
        state = torch.load(self.path, map_location=trainer.device_, weights_only=True)
        if state["run_key"] != self.run_key:
            raise ValueError(
                f"checkpoint_dir {str(self.path.parent)!r} holds a checkpoint of a "
                "different run (other data, parameters or initial weights); use "
                "an empty directory."
            )
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer_.load_state_dict(state["optimizer"])
        trainer.scheduler_.load_state_dict(state["scheduler"])
        trainer.scaler_.load_state_dict(state["scaler"])
        trainer.generator_.set_state(state["generator"])
        trainer.history_ = list(state["history"])
        if recorder is not None:
            recorder.load_state_dict(state["recorder"])
        return state["epoch"] + 1


class AdversarialTrainer:
    """Adversarially train a ``torch.nn.Module`` classifier.

    One loop over epochs and batches whose per-batch work lives in
    :meth:`train_step` (override it to change the training objective) and
    whose attack lives in :meth:`attack`; recording, progress and anything
    else are :class:`Callback` objects.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a batch of inputs to logits. Trained in place.
    method : {"pgd", "trades", "standard"}, default="pgd"
        ``"pgd"``: PGD adversarial training (Madry et al. 2018), cross-entropy
        on PGD inputs. ``"trades"``: TRADES (Zhang et al. 2019), cross-entropy
        on clean inputs plus ``beta`` times the KL divergence between the
        predictions on clean and adversarial inputs; its attack maximises that
        KL. ``"standard"``: no attack (an undefended baseline).
    eps : float, default=8/255
        Attack budget, in the scale of the inputs (images in [0, 1]).
    norm : {"linf", "l2"}, default="linf"
    attack_steps : int, default=10
    step_size : float or None, default=None
        PGD step; ``None`` uses ``2.5 * eps / attack_steps``.
    beta : float, default=6.0
        TRADES trade-off; ignored by the other methods.
    epochs : int, default=10
    batch_size : int, default=128
    optimizer : {"sgd", "adam"}, default="sgd"
    lr : float, default=0.1
    momentum : float, default=0.9
        SGD only.
    nesterov : bool, default=True
        SGD only.
    weight_decay : float, default=5e-4
    schedule : {"cosine", "multistep", "constant"}, default="cosine"
        Learning-rate schedule, stepped after every batch. ``"multistep"``
        divides the rate by 10 at 50% and 75% of training.
    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when available.
    amp : bool, default=False
        Mixed precision (float16 autocast with gradient scaling) on CUDA. On a
        CPU device it is ignored with a warning.
    bounds : tuple of float or None, default=(0.0, 1.0)
        Valid input box kept by the attacks; ``None`` for unbounded features.
    augment : callable or None, default=None
        ``augment(x_batch, generator) -> x_batch`` applied to training batches
        only (never to recordings).
    random_state : int, RandomState or None, default=None
        Seeds batch order and attack random starts.
    verbose : bool, default=False
        Show a tqdm progress bar over epochs.

    Attributes
    ----------
    history_ : list of dict
        Per epoch: mean training loss, training (adversarial) accuracy, seconds.
    n_classes_ : int
    device_ : torch.device

    Examples
    --------
    >>> import numpy as np, torch
    >>> from advprune.training import AdversarialTrainer
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(64, 2)).astype("float32")
    >>> y = (X[:, 0] > 0.5).astype("int64")
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(),
    ...                             torch.nn.Linear(16, 2))
    >>> trainer = AdversarialTrainer(model, eps=0.05, epochs=3, batch_size=16,
    ...                              random_state=0)
    >>> dynamics = trainer.fit(X, y, record="epoch")
    >>> dynamics.adversarial.shape
    (3, 64)
    """

    def __init__(
        self,
        model,
        *,
        method="pgd",
        eps=8 / 255,
        norm="linf",
        attack_steps=10,
        step_size=None,
        beta=6.0,
        epochs=10,
        batch_size=128,
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        schedule="cosine",
        device="auto",
        amp=False,
        bounds=(0.0, 1.0),
        augment=None,
        random_state=None,
        verbose=False,
    ):
        self.model = model
        self.method = method
        self.eps = eps
        self.norm = norm
        self.attack_steps = attack_steps
        self.step_size = step_size
        self.beta = beta
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.device = device
        self.amp = amp
        self.bounds = bounds
        self.augment = augment
        self.random_state = random_state
        self.verbose = verbose

    # -- set-up ---------------------------------------------------------------

    def _validate(self):
        if not isinstance(self.model, torch.nn.Module):
            raise TypeError(
                f"model must be a torch.nn.Module; got {type(self.model).__name__}."
            )
        for name, allowed in (
            ("method", _METHODS),
            ("optimizer", _OPTIMIZERS),
            ("schedule", _SCHEDULES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name} must be one of {allowed}; got {getattr(self, name)!r}."
                )
        for name in ("epochs", "batch_size", "attack_steps"):
            value = getattr(self, name)
            if not isinstance(value, Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}.")
        for name in ("eps", "lr", "weight_decay", "beta", "momentum"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name} must be a float >= 0; got {value!r}.")
        if self.augment is not None and not callable(self.augment):
            raise TypeError("augment must be a callable or None.")

    def _make_optimizer(self):
        params = self.model.parameters()
        if self.optimizer == "sgd":
            return torch.optim.SGD(
                params,
                lr=self.lr,
                momentum=self.momentum,
                nesterov=self.nesterov and self.momentum > 0,
                weight_decay=self.weight_decay,
            )
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)

    def _make_schedule(self, optimizer, steps_per_epoch):
        total = self.epochs * steps_per_epoch

        def factor(step):
            if self.schedule == "cosine":
                return 0.5 * (1 + math.cos(math.pi * step / total))
            if self.schedule == "multistep":
                return 0.1 ** ((step >= total // 2) + (step >= 3 * total // 4))
            return 1.0

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def autocast(self):
        """The autocast context of the forward passes (a no-op without AMP)."""
        return torch.autocast(
            device_type=self.device_.type, dtype=torch.float16, enabled=self.amp_
        )

    # -- the per-batch steps --------------------------------------------------

    def attack(self, x, y, *, generator=None, loss="ce"):
        """Return PGD inputs against the model in its current mode.

        Parameters
        ----------
        x, y : torch.Tensor
            A batch on the training device.
        generator : torch.Generator or None
            Random starts; ``None`` uses the trainer's own generator.
        loss : {"ce", "cw"} or callable, default="ce"
        """
        with self.autocast():
            return pgd(
                self.model,
                x,
                y,
                eps=self.eps,
                norm=self.norm,
                steps=self.attack_steps,
                step_size=self.step_size,
                loss=loss,
                bounds=self.bounds,
                generator=self.generator_ if generator is None else generator,
            )

    def train_step(self, x, y):
        """One optimisation step on a batch; returns ``(logits, loss)``.

        ``logits`` are those of the training forward pass on the input the
        objective is computed on (adversarial for PGD-AT and TRADES), which
        the online recorder reads. The attack is generated in eval mode so that
        its forward passes do not update batch-norm statistics.
        """
        model = self.model
        if self.method == "standard":
            model.train()
            with self.autocast():
                logits = model(x)
                loss = F.cross_entropy(logits, y)
        else:
            model.eval()
            if self.method == "pgd":
                x_adv = self.attack(x, y)
                model.train()
                with self.autocast():
                    logits = model(x_adv)
                    loss = F.cross_entropy(logits, y)
            else:
                with torch.no_grad(), self.autocast():
                    clean_log_probas = F.log_softmax(model(x).float(), dim=1)

                def kl_to_clean(adv_logits, _):
                    log_probas = F.log_softmax(adv_logits.float(), dim=1)
                    return F.kl_div(
                        log_probas,
                        clean_log_probas,
                        log_target=True,
                        reduction="none",
                    ).sum(1)

                x_adv = self.attack(x, y, loss=kl_to_clean)
                model.train()
                with self.autocast():
                    clean_logits = model(x)
                    logits = model(x_adv)
                    robust = F.kl_div(
                        F.log_softmax(logits.float(), dim=1),
                        F.log_softmax(clean_logits.float(), dim=1),
                        log_target=True,
                        reduction="batchmean",
                    )
                    loss = F.cross_entropy(clean_logits, y) + self.beta * robust
        self.optimizer_.zero_grad(set_to_none=True)
        self.scaler_.scale(loss).backward()
        self.scaler_.step(self.optimizer_)
        self.scaler_.update()
        self.scheduler_.step()
        return logits, loss

    # -- the loop -------------------------------------------------------------

    def fit(
        self,
        X,
        y,
        *,
        record_indices=None,
        record="epoch",
        record_probas=False,
        callbacks=(),
        checkpoint_dir=None,
    ):
        """Train the model adversarially on ``(X, y)``, recording dynamics.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Training inputs. Converted to one float32 tensor: the training set
            (in the pruner, the scored subset) must fit in memory.
        y : array-like of shape (n_samples,)
            Integer class labels in ``[0, n_classes)``.
        record_indices : array-like of int or None, default=None
            Rows whose dynamics are recorded; ``None`` records all rows.
        record : {"epoch", "online"} or None, default="epoch"
            Recording protocol (see the module docstring); ``None`` records
            nothing.
        record_probas : bool, default=False
            Also keep float16 class probabilities of shape
            (epochs, n_recorded, n_classes).
        callbacks : sequence of Callback, default=()
            Further hooks, called after the recorder.
        checkpoint_dir : str, path or None, default=None
            After every epoch, the model, optimizer, schedule, RNG states,
            history and the dynamics recorded so far are saved there
            atomically (a temporary file, then a rename). A later call with
            the same model initialisation, data and parameters resumes from the
            last saved epoch and ends with the same result (bit-identical on
            the CPU) as an uninterrupted run; a checkpoint of a different run
            raises ``ValueError``. It loads with ``torch.load(path,
            weights_only=True)``.

        Returns
        -------
        Dynamics or None
            ``None`` when ``record`` is ``None``.
        """
        self._validate()
        if record is not None and record not in _RECORD_MODES:
            raise ValueError(
                f"record must be one of {_RECORD_MODES} or None; got {record!r}."
            )
        X_tensor, y_tensor = self._as_tensors(X, y)
        self._check_augment(X_tensor[:2])
        n = len(X_tensor)
        if record_indices is None:
            record_indices = np.arange(n)
        record_indices = np.asarray(record_indices)
        if record_indices.ndim != 1 or not np.issubdtype(
            record_indices.dtype, np.integer
        ):
            raise ValueError("record_indices must be a 1-D array of integers.")
        if record_indices.size and (
            record_indices.min() < 0 or record_indices.max() >= n
        ):
            raise ValueError(f"record_indices must lie in [0, {n}).")

        self.device_ = resolve_device(self.device)
        self.amp_ = bool(self.amp) and self.device_.type == "cuda"
        if self.amp and not self.amp_:
            warnings.warn(
                "amp=True needs a CUDA device; training in float32.", stacklevel=2
            )
        # Training and recording draw from separate streams, so that recording
        # (or not) leaves the training run unchanged.
        seeds = torch_generator(self.random_state)
        train_seed, record_seed = torch.randint(2**62, (2,), generator=seeds).tolist()
        self.generator_ = torch.Generator().manual_seed(train_seed)
        self.model.to(self.device_)
        self.optimizer_ = self._make_optimizer()
        steps_per_epoch = math.ceil(n / self.batch_size)
        self.scheduler_ = self._make_schedule(self.optimizer_, steps_per_epoch)
        self.scaler_ = torch.amp.GradScaler(self.device_.type, enabled=self.amp_)
        self.history_ = []

        recorder = None
        if record == "epoch":
            recorder = EpochRecorder(
                record_indices,
                record_probas=record_probas,
                random_state=record_seed,
            )
        elif record == "online":
            recorder = OnlineRecorder(record_indices, record_probas=record_probas)
        hooks = [h for h in (recorder,) if h is not None] + list(callbacks)
        if self.verbose:
            hooks.append(_ProgressBar())

        checkpoint = None
        if checkpoint_dir is not None:
            checkpoint = _Checkpoint(
                checkpoint_dir,
                self._run_key(
                    X_tensor, y_tensor, record_indices, record, record_probas
                ),
            )
        for hook in hooks:
            hook.on_train_begin(self, X_tensor, y_tensor)
        first_epoch = 0
        if checkpoint is not None:
            first_epoch = checkpoint.restore(self, recorder)
        for epoch in range(first_epoch, self.epochs):
            self.epoch_ = epoch
            self._run_epoch(X_tensor, y_tensor, hooks)
            for hook in hooks:
                hook.on_epoch_end(self, epoch)
            if checkpoint is not None:
                checkpoint.save(self, recorder)
        for hook in hooks:
            hook.on_train_end(self)
        self.model.eval()
        return None if recorder is None else recorder.dynamics()

    def _check_augment(self, X_sample):
        """Dry-run ``augment`` on two training samples, so that an augmentation
        that cannot work on this data fails before any training."""
        if self.augment is None:
            return
        out = self.augment(X_sample.clone(), torch.Generator().manual_seed(0))
        if not isinstance(out, torch.Tensor) or out.shape != X_sample.shape:
            raise ValueError(
                f"augment must return a tensor of the batch's shape "
                f"{tuple(X_sample.shape)}; {self.augment!r} returned "
                f"{type(out).__name__} of shape {tuple(getattr(out, 'shape', ()))}."
            )

    def _run_key(self, X, y, record_indices, record, record_probas):
        """Fingerprint of a run: data, parameters and initial weights."""
        params = {
            k: v for k, v in vars(self).items() if not k.endswith("_") and k != "model"
        }
        weights = [t.detach().cpu().numpy() for t in self.model.state_dict().values()]
        return joblib.hash(
            [
                X.numpy(),
                y.numpy(),
                repr(params),
                repr(self.model),
                weights,
                record_indices,
                record,
                record_probas,
            ]
        )

    def _as_tensors(self, X, y):
        X_array = np.asarray(X, dtype=np.float32)
        y_array = np.asarray(y)
        if X_array.ndim < 2:
            raise ValueError(
                f"X must have shape (n_samples, ...) with at least 2 dimensions; "
                f"got shape {X_array.shape}."
            )
        if y_array.ndim != 1 or len(y_array) != len(X_array):
            raise ValueError(
                f"y must be 1-D with one label per row of X ({len(X_array)}); "
                f"got shape {y_array.shape}."
            )
        if not np.issubdtype(y_array.dtype, np.integer):
            raise TypeError(f"y must hold integer class labels; got {y_array.dtype}.")
        if len(y_array) == 0 or y_array.min() < 0:
            raise ValueError("y must be non-empty labels in [0, n_classes).")
        if not np.isfinite(X_array).all():
            raise ValueError("X contains NaN or infinity.")
        self.n_classes_ = int(y_array.max()) + 1
        return torch.from_numpy(X_array.copy()), torch.from_numpy(
            y_array.astype(np.int64)
        )

    def _run_epoch(self, X, y, hooks):
        started = time.perf_counter()
        order = torch.randperm(len(X), generator=self.generator_)
        total_loss = torch.zeros((), device=self.device_)
        correct = torch.zeros((), device=self.device_)
        for start in range(0, len(X), self.batch_size):
            indices = order[start : start + self.batch_size]
            xb = X[indices].to(self.device_, non_blocking=True)
            yb = y[indices].to(self.device_, non_blocking=True)
            if self.augment is not None:
                xb = self.augment(xb, self.generator_)
            logits, loss = self.train_step(xb, yb)
            total_loss += loss.detach().float() * len(indices)
            correct += (logits.argmax(1) == yb).sum()
            for hook in hooks:
                hook.on_batch_end(self, indices, logits, yb)
        self.history_.append(
            {
                "epoch": self.epoch_,
                "loss": float(total_loss) / len(X),
                "train_accuracy": float(correct) / len(X),
                "seconds": time.perf_counter() - started,
            }
        )
