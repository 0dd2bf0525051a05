"""Pool tracking: the held-out training dynamics of every sample of a pool."""

import time

import joblib
import numpy as np
import torch
import torch.nn.functional as F

from ._device import torch_generator
from ._recording import Callback, eval_batches

__all__ = ["PoolTracker"]


class PoolTracker(Callback):
    """Record the clean true-class probability of every pool sample after epochs.

    A callback of the scoring run that trains on a small subset of a pool:
    after every ``every``-th epoch (and always after the last one) it puts the
    model in eval mode and streams the whole pool through it, forward passes
    only, no attack, recording each sample's true-class probability. For the
    samples the model never trains on, that series is held out: how the
    prediction of an unseen sample moves while the model learns the subset.
    It costs one forward pass per pool sample and tracked epoch, a small
    fraction of an adversarial training step (see the user guide's scoring
    budget).

    The pool is read ``batch_size`` rows at a time: a read-only ``np.memmap``
    or an :class:`advprune.datasets.ImageArray` of millions of samples is never
    loaded whole. On a GPU, host threads read the next batches while the
    device works (as :func:`~advprune.training.batched_forward` does), and
    the probabilities are copied back once per pass. The recording is part
    of the trainer's checkpoint, so an interrupted run resumes with it.

    Parameters
    ----------
    X : array-like of shape (n_pool, ...)
        The pool, in the sample shape the model takes.
    y : array-like of shape (n_pool,)
        Integer labels in ``[0, n_classes)``, encoded as the training labels.
    every : int, default=1
        Track after epochs ``every - 1, 2 * every - 1, ...`` and the last one.
    adversarial : bool, default=False
        After the last epoch, also record each sample's true-class
        probability under a PGD attack with the trainer's budget (``eps``,
        ``norm``, ``bounds``), in eval mode: about ``3 * attack_steps + 1``
        forward-pass equivalents per sample, once.
    attack_steps : int or None, default=None
        Steps of that attack; ``None`` uses the trainer's ``attack_steps``.
    batch_size : int, default=1024
        Rows per forward pass.
    random_state : int, RandomState or None, default=None
        Seeds the attack's random starts, drawn on the training device (its
        own stream: tracking never changes the training run).

    Attributes
    ----------
    epochs_ : ndarray of shape (n_tracked,)
        The 0-based epochs after which the pool was tracked.
    series_ : ndarray of shape (n_tracked, n_pool), float32
        Clean true-class probabilities (eval mode, unaugmented).
    adversarial_ : ndarray of shape (n_pool,), float32, or None
        True-class probabilities under attack after the last epoch
        (``adversarial=True``).
    seconds_ : float
        Wall time spent tracking, in this process.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from advprune.training import AdversarialTrainer, PoolTracker
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(100, 2)).astype("float32")
    >>> y = (X[:, 0] > 0.5).astype("int64")
    >>> tracker = PoolTracker(X, y, every=2, adversarial=True, random_state=0)
    >>> trainer = AdversarialTrainer(torch.nn.Linear(2, 2), eps=0.05, epochs=5,
    ...                              batch_size=10, device="cpu", random_state=0)
    >>> _ = trainer.fit(X[:20], y[:20], record=None, callbacks=[tracker])
    >>> tracker.epochs_.tolist(), tracker.series_.shape, tracker.adversarial_.shape
    ([1, 3, 4], (3, 100), (100,))
    >>> bool((tracker.adversarial_ <= tracker.series_[-1] + 1e-6).mean() > 0.9)
    True
    """

    def __init__(
        self,
        X,
        y,
        *,
        every=1,
        adversarial=False,
        attack_steps=None,
        batch_size=1024,
        random_state=None,
    ):
        self.X = X
        self.y = np.asarray(y, dtype=np.int64)
        self.every = every
        self.adversarial = adversarial
        self.attack_steps = attack_steps
        self.batch_size = batch_size
        self.random_state = random_state

    def on_train_begin(self, trainer, **kwargs):
        epochs = np.arange(trainer.epochs)
        tracked = ((epochs + 1) % self.every == 0) | (epochs == trainer.epochs - 1)
        self.epochs_ = epochs[tracked]
        self.series_ = np.full((len(self.epochs_), len(self.y)), np.nan, np.float32)
        self.adversarial_ = (
            np.full(len(self.y), np.nan, np.float32) if self.adversarial else None
        )
        self._generator = torch_generator(self.random_state, device=trainer.device_)
        self.seconds_ = 0.0

    def on_epoch_end(self, trainer, epoch=None, **kwargs):
        slot = np.searchsorted(self.epochs_, epoch)
        if slot == len(self.epochs_) or self.epochs_[slot] != epoch:
            return
        started = time.perf_counter()
        attack = self.adversarial and epoch == trainer.epochs - 1
        clean, adversarial = [], []
        for batch, rows, (xb, yb) in eval_batches(
            trainer,
            len(self.y),
            self.batch_size,
            f"tracking the pool, epoch {epoch + 1}",
            lambda rows: (np.asarray(self.X[rows], dtype=np.float32), self.y[rows]),
        ):
            if len(rows):
                clean.append((rows, self._true_probability(trainer, xb, yb)))
            if attack:
                x_adv = trainer.attack(
                    xb,
                    yb,
                    generator=self._generator,
                    steps=self.attack_steps,
                    of_batch=len(batch) if trainer.world_size_ > 1 else None,
                )
                if len(rows):
                    adversarial.append(
                        (rows, self._true_probability(trainer, x_adv, yb))
                    )
        # Copied back once the whole pass is queued: a copy per batch would
        # hold the host until the device caught up.
        for rows, probability in clean:
            self.series_[slot, rows] = probability.cpu().numpy()
        for rows, probability in adversarial:
            self.adversarial_[rows] = probability.cpu().numpy()
        self.seconds_ += time.perf_counter() - started

    def recorded_arrays(self, epoch):
        slot = np.searchsorted(self.epochs_, epoch)
        if slot == len(self.epochs_) or self.epochs_[slot] != epoch:
            return {}
        arrays = {"series": self.series_[slot]}
        if self.adversarial and epoch == self.epochs_[-1]:
            arrays["adversarial"] = self.adversarial_
        return arrays

    @staticmethod
    @torch.no_grad()
    def _true_probability(trainer, x, y):
        with trainer.autocast():
            logits = trainer.model(x)
        probas = F.softmax(logits.float(), dim=1)
        return probas.gather(1, y[:, None])[:, 0]

    def state_dict(self):
        """The recording so far (for the trainer's checkpoint), with a key of
        the pool it was recorded on."""
        state = {"series": torch.from_numpy(self.series_), "pool": self._key()}
        if self.adversarial:
            state["adversarial"] = torch.from_numpy(self.adversarial_)
        return state

    def load_state_dict(self, state):
        """Restore the recording of a checkpoint taken on the same pool."""
        if state["pool"] != self._key():
            raise ValueError(
                "the checkpoint's pool tracking was recorded on another pool (or "
                "with another `every`); use an empty checkpoint_dir."
            )
        self.series_[...] = state["series"].numpy()
        if self.adversarial:
            self.adversarial_[...] = state["adversarial"].numpy()

    def _key(self):
        settings = [self.epochs_, self.adversarial, self.attack_steps]
        return [pool_key(self.X, self.y), joblib.hash(settings)]


def pool_key(X, y):
    """A cheap key of a pool: its shape, labels and 64 evenly spaced rows
    (hashing a pool of millions would cost a pass over it)."""
    rows = np.unique(np.linspace(0, len(y) - 1, 64).astype(np.int64))
    return joblib.hash([X.shape, np.asarray(y), np.asarray(X[rows], dtype=np.float32)])
