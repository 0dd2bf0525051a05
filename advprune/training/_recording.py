"""Callbacks of the training loop: the recorders of training dynamics and the
progress bar."""

from contextlib import closing
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .._progress import progress_bar
from ._batches import batch_slices
from ._device import read_batches, torch_generator

__all__ = ["Callback", "Dynamics", "EpochRecorder", "OnlineRecorder"]


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
    available. The loop passes everything after ``trainer`` by keyword, and
    every hook takes ``**kwargs``: a hook that names only the arguments it uses
    keeps working when later versions pass more.

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
    ...     def on_train_begin(self, trainer, **kwargs):
    ...         self.seen = [0] * trainer.epochs
    ...     def on_batch_end(self, trainer, indices, **kwargs):
    ...         self.seen[trainer.epoch_] += len(indices)
    >>> counter = SeenPerEpoch()
    >>> _ = trainer.fit(X, y, record=None, callbacks=[counter])
    >>> counter.seen
    [40, 40, 40]
    """

    def on_train_begin(self, trainer, X=None, y=None, **kwargs):
        """Called once before the first epoch with the training tensors."""

    def on_batch_end(self, trainer, indices=None, logits=None, y=None, **kwargs):
        """Called after each optimizer step with the batch's sample indices,
        the logits of the training forward pass (adversarial for PGD-AT and
        TRADES) and the batch labels."""

    def on_epoch_end(self, trainer, epoch=None, **kwargs):
        """Called after each epoch (0-based ``epoch``)."""

    def on_train_end(self, trainer, **kwargs):
        """Called once after the last epoch."""

    def recorded_arrays(self, epoch):
        """What this callback recorded in ``epoch``, to merge across processes
        in data-parallel training.

        Returns a dict of floating-point arrays, ``{name: array}``, that are
        views of the callback's own storage (e.g. row ``epoch`` of a series).
        In a data-parallel run (under ``torchrun``) each process records only
        its share of the samples (``trainer.shard(n)``) and leaves every other
        entry NaN; after every callback's :meth:`on_epoch_end`, the trainer
        overwrites each array in place with its merge over the processes
        (every entry from the one process that recorded it, an error if two
        did), so that every process holds the whole recording and a
        checkpoint saves it. Nothing to merge by default.
        """
        return {}


class _Recorder(Callback):
    """Shared storage of the two recorders: a float32 series per signal and,
    on request, float16 class probabilities."""

    def __init__(self, indices, *, record_probas=False):
        self.indices = np.asarray(indices, dtype=np.int64)
        self.record_probas = record_probas

    def _allocate(self, trainer, n_classes, signals):
        n_epochs, n = trainer.epochs, len(self.indices)
        # NaN until recorded: the convention of recorded_arrays.
        self.series_ = {s: np.full((n_epochs, n), np.nan, np.float32) for s in signals}
        self.probas_ = {
            s: np.full((n_epochs, n, n_classes), np.nan, np.float16)
            if self.record_probas
            else None
            for s in signals
        }

    def recorded_arrays(self, epoch):
        arrays = {f"series.{k}": v[epoch] for k, v in self.series_.items()}
        if self.record_probas:
            arrays.update({f"probas.{k}": v[epoch] for k, v in self.probas_.items()})
        return arrays

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
    so that recording does not change the training run. In a data-parallel run
    each process records its share of every batch of recorded samples.

    Parameters
    ----------
    indices : array-like of int
        Rows of the training data to record.
    record_probas : bool, default=False
        Also keep the full class probabilities (float16).
    attack_steps : int or None, default=None
        PGD steps of the recording's attack; ``None`` uses the trainer's.
    random_state : int or None, default=None
        Seed of the attack's random starts, drawn on the training device.

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

    def __init__(
        self, indices, *, record_probas=False, attack_steps=None, random_state=None
    ):
        super().__init__(indices, record_probas=record_probas)
        self.attack_steps = attack_steps
        self.random_state = random_state

    def on_train_begin(self, trainer, X=None, y=None, **kwargs):
        self._X, self._y = X, y
        self._generator = torch_generator(self.random_state, device=trainer.device_)
        self._allocate(trainer, trainer.n_classes_, ("adversarial", "clean"))

    def on_epoch_end(self, trainer, epoch=None, **kwargs):
        model = trainer.model

        def read(positions):
            rows = torch.as_tensor(self.indices[positions])
            return self._X[rows], self._y[rows]

        for batch, positions, (xb, yb) in eval_batches(
            trainer,
            len(self.indices),
            trainer.batch_size,
            f"recording epoch {epoch + 1}",
            read,
        ):
            x_adv = trainer.attack(
                xb,
                yb,
                generator=self._generator,
                of_batch=len(batch) if trainer.world_size_ > 1 else None,
                steps=self.attack_steps,
            )
            if len(positions):
                with torch.no_grad(), trainer.autocast():
                    clean = F.softmax(model(xb).float(), dim=1)
                    adversarial = F.softmax(model(x_adv).float(), dim=1)
                self._store("clean", epoch, positions, clean, yb)
                self._store("adversarial", epoch, positions, adversarial, yb)

    def on_train_end(self, trainer, **kwargs):
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

    def on_train_begin(self, trainer, X=None, y=None, **kwargs):
        self._allocate(trainer, trainer.n_classes_, ("adversarial",))
        self._position = np.full(len(X), -1, dtype=np.int64)
        self._position[self.indices] = np.arange(len(self.indices))

    def on_batch_end(self, trainer, indices=None, logits=None, y=None, **kwargs):
        positions = self._position[indices.numpy()]
        wanted = positions >= 0
        if not wanted.any():
            return
        selected = torch.as_tensor(wanted, device=logits.device)
        probas = F.softmax(logits.detach()[selected].float(), dim=1)
        self._store(
            "adversarial", trainer.epoch_, positions[wanted], probas, y[selected]
        )


def eval_batches(trainer, n, batch_size, desc, read):
    """The batches of a pass over ``n`` samples with the model in eval mode
    after an epoch, under a progress bar named ``desc``: yields ``(batch,
    mine, data)``, the batch's positions in ``range(n)``, this process's share
    of them (all of them in one process) and ``read(mine)`` on the training
    device, read ahead of the device by :func:`read_batches`. The model's mode
    is restored at the end, or when the pass stops early.
    """
    model = trainer.model
    was_training = model.training
    model.eval()
    batches = [
        np.arange(start, min(start + batch_size, n))
        for start in range(0, n, batch_size)
    ]
    shares = [batch[trainer.shard(len(batch))] for batch in batches]
    reads = read_batches(read, shares, trainer.device_)
    try:
        with (
            progress_bar(
                total=n, desc=desc, unit="sample", verbose=trainer.verbose, leave=False
            ) as bar,
            closing(reads),
        ):
            for batch, mine, data in zip(batches, shares, reads, strict=True):
                yield batch, mine, data
                bar.update(len(batch))
    finally:
        model.train(was_training)


class _ProgressBar(Callback):
    """One bar over every batch of the run, so that a long epoch shows its
    progress and an ETA; the postfix names the epoch and the last epoch's loss
    and training accuracy."""

    def on_train_begin(self, trainer, X=None, y=None, **kwargs):
        self._steps = len(batch_slices(len(X), trainer.batch_size))
        self._bar = progress_bar(
            total=trainer.epochs * self._steps,
            desc="adversarial training",
            unit="batch",
        )
        self._last = ""

    def on_batch_end(self, trainer, **kwargs):
        # A resumed run starts at its first unfinished epoch.
        behind = trainer.epoch_ * self._steps - self._bar.n
        self._bar.update(max(behind, 0) + 1)
        self._bar.set_postfix_str(
            f"epoch {trainer.epoch_ + 1}/{trainer.epochs}{self._last}", refresh=False
        )

    def on_epoch_end(self, trainer, epoch=None, **kwargs):
        last = trainer.history_[-1]
        self._last = (
            f", loss {last['loss']:.3f}, train acc {last['train_accuracy']:.3f}"
        )

    def on_train_end(self, trainer, **kwargs):
        self._bar.close()
