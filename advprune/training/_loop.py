"""The adversarial training loop."""

import math
import time
import warnings
from numbers import Integral, Real

import joblib
import numpy as np
import torch
import torch.nn.functional as F

from .._validation import training_params, validate_training_params
from ..attacks import pgd
from ..models import _fingerprint
from ._augment import stable_identity
from ._checkpoint import _Checkpoint
from ._device import resolve_device, torch_generator
from ._recording import EpochRecorder, OnlineRecorder, _ProgressBar

__all__ = ["AdversarialTrainer"]

_RECORD_MODES = ("epoch", "online")


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
        return validate_training_params(training_params(self), "AdversarialTrainer")

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
                bounds=self.bounds_,
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
            atomically (a temporary file, then a rename) with a SHA-256 digest
            of their bytes. A later call of the same run resumes from the last
            saved epoch and ends with the same result (bit-identical on the
            CPU) as an uninterrupted run. The same run: the same data, initial
            weights, recording, seed and training parameters, on a device of
            the same type (CPU or CUDA; ``"auto"``, ``"cpu"`` or ``"cuda:0"``
            are spellings of one), with ``augment`` the same function (by
            module and qualified name; its code is not compared) or an object
            of the same class and repr; ``verbose`` does not count. A
            checkpoint of a different run raises ``ValueError``, and so does a
            damaged or edited one (its digest does not match), naming the file,
            before anything is restored: delete the file to start over.
            Temporary files of a save that was killed are removed when the
            next run starts. ``torch.load(path, weights_only=True)`` reads the
            file as ``{"format", "sha256", "state"}``.

        Returns
        -------
        Dynamics or None
            ``None`` when ``record`` is ``None``.
        """
        self.bounds_ = self._validate()["bounds"]
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
            hook.on_train_begin(self, X=X_tensor, y=y_tensor)
        first_epoch = 0
        if checkpoint is not None:
            first_epoch = checkpoint.restore(self, recorder)
        for epoch in range(first_epoch, self.epochs):
            self.epoch_ = epoch
            self._run_epoch(X_tensor, y_tensor, hooks)
            for hook in hooks:
                hook.on_epoch_end(self, epoch=epoch)
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
        """Fingerprint of a run: what changes its result, and nothing else.

        The data, the initial weights, what is recorded, the seed and every
        training parameter, numbers by value (``0.1`` and ``np.float64(0.1)``
        alike), ``bounds`` as validated, the device by its type (CPU and CUDA
        runs differ in their last bits; ``"auto"``, ``"cpu"`` or ``"cuda:0"``
        spell a type), AMP as it is applied, and ``augment`` by
        :func:`~advprune.training._augment.stable_identity`. Not ``verbose``.
        """
        params = {
            **training_params(self),
            "bounds": self.bounds_,
            "device": self.device_.type,
            "amp": self.amp_,
            "augment": stable_identity(self.augment),
        }
        return joblib.hash(
            [
                X.numpy(),
                y.numpy(),
                {name: _by_value(value) for name, value in params.items()},
                _by_value(self.random_state),
                _fingerprint(self.model),
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
                hook.on_batch_end(self, indices=indices, logits=logits, y=yb)
        self.history_.append(
            {
                "epoch": self.epoch_,
                "loss": float(total_loss) / len(X),
                "train_accuracy": float(correct) / len(X),
                "seconds": time.perf_counter() - started,
            }
        )


def _by_value(value):
    """Numbers as plain Python numbers, so that equal values hash alike."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    if isinstance(value, tuple | list):
        return tuple(_by_value(item) for item in value)
    return value
