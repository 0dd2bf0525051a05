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
from ..attacks import _random_start, pgd
from ..models import _fingerprint
from ._augment import stable_identity
from ._batches import batch_slices
from ._checkpoint import _Checkpoint
from ._device import resolve_device, to_device, torch_generator
from ._distributed import (
    GradientWeights,
    broadcast_buffers,
    merge_disjoint,
    shard,
    weighted_allreduce,
    world,
)
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
        Maps a batch of inputs to logits. Trained in place. With ``amp`` on a
        CUDA device its 4-D weights are first put in channels-last memory
        format, the layout tensor-core convolutions run in (faster training;
        docs/gpu.rst has the measurement), which changes no value.
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
        A last batch of a single sample joins the batch before it, since
        batch normalisation cannot train on one sample.
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
    amp : bool or {"float16", "bfloat16"}, default=False
        Mixed precision. ``"float16"`` (or ``True``): float16 autocast with
        gradient scaling, on CUDA only (ignored with a warning on a CPU
        device). ``"bfloat16"``: bfloat16 autocast, which needs no scaling
        (its exponent range is float32's), on CUDA or the CPU. Losses and
        recorded probabilities are computed in float32 either way.
    bounds : tuple of float or None, default=(0.0, 1.0)
        Valid input box kept by the attacks; ``None`` for unbounded features.
    augment : callable or None, default=None
        ``augment(x_batch, generator) -> x_batch`` applied to training batches
        only (never to recordings).
    random_state : int, RandomState or None, default=None
        Seeds batch order and attack random starts.
    verbose : bool, default=False
        Show a progress bar over the batches of the whole run (with the
        epoch, the last epoch's loss and training accuracy, and an ETA), and
        one over each epoch's recording.

    Attributes
    ----------
    history_ : list of dict
        Per epoch: mean training loss, training (adversarial) accuracy, seconds.
    n_classes_ : int
    device_ : torch.device
    amp_ : {False, "float16", "bfloat16"}
        The precision applied (``False`` where float16 was asked for on a
        CPU device).
    rank_, world_size_ : int
        This process's rank and the number of processes of a data-parallel
        run; 0 and 1 otherwise.
    network_ : torch.nn.Module
        What the differentiated forward passes run through: ``model``, or
        during a data-parallel run ``model`` in
        :class:`~torch.nn.parallel.DistributedDataParallel`.
    generator_ : torch.Generator
        Draws the batch order (and the augmentation), on the CPU.
    attack_generator_ : torch.Generator
        Draws the training attack's random starts on the training device:
        ``generator_`` itself on the CPU; on a GPU a generator of its own,
        seeded alike, so that the starts are drawn where they are used.

    Notes
    -----
    Data-parallel training: started under ``torchrun`` (or any
    ``torch.distributed`` process group), ``fit`` splits every batch of
    ``batch_size`` samples between the processes, reduces the gradients
    weighted by each process's share, and merges every callback's
    :meth:`~advprune.training.Callback.recorded_arrays` after each epoch, so
    that each process ends with the same model and recordings: those of a
    one-process run up to rounding when the model has no batch
    normalisation. See the user guide.

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
            device_type=self.device_.type,
            dtype=torch.bfloat16 if self.amp_ == "bfloat16" else torch.float16,
            enabled=bool(self.amp_),
        )

    # -- the per-batch steps --------------------------------------------------

    def attack(self, x, y, *, generator=None, loss="ce", steps=None, of_batch=None):
        """Return PGD inputs against the model in its current mode.

        Parameters
        ----------
        x, y : torch.Tensor
            A batch on the training device.
        generator : torch.Generator or None
            Random starts; ``None`` uses the trainer's ``attack_generator_``.
        loss : {"ce", "cw"} or callable, default="ce"
        steps : int or None, default=None
            PGD steps; ``None`` uses ``attack_steps`` (and ``step_size``),
            otherwise the step is ``2.5 * eps / steps``.
        of_batch : int or None, default=None
            In a data-parallel run: ``x`` holds this process's rows,
            ``self.shard(of_batch)``, of a batch of ``of_batch`` samples. The
            random starts of the whole batch are drawn and this process keeps
            its rows', so that every sample starts where a one-process run
            starts it and the generator stays the same in every process.
            During a training step it is the step's batch; ``None`` otherwise.
        """
        generator = self.attack_generator_ if generator is None else generator
        if of_batch is None:
            of_batch = getattr(self, "_of_batch", None)
        start = True
        if of_batch is not None and self.eps > 0:
            starts = _random_start(
                (of_batch, *x.shape[1:]),
                self.eps,
                self.norm,
                generator,
                dtype=x.dtype,
                device=x.device,
            )
            rows = torch.from_numpy(self.shard(of_batch)).to(x.device)
            if len(rows) != len(x):  # the training loop's stand-in row
                return x.clone()
            start = starts[rows]
        if len(x) == 0:
            return x.clone()
        with self.autocast():
            return pgd(
                self.model,
                x,
                y,
                eps=self.eps,
                norm=self.norm,
                steps=self.attack_steps if steps is None else steps,
                step_size=self.step_size if steps is None else None,
                loss=loss,
                random_start=start,
                bounds=self.bounds_,
                generator=generator,
            )

    def shard(self, n):
        """This process's positions among ``n`` items of a batch.

        In a data-parallel run (under ``torchrun``), process ``rank_`` of
        ``world_size_`` takes positions ``rank_, rank_ + world_size_, ...``;
        otherwise all of them. Callbacks that evaluate many samples use it to
        split the work the same way as the trainer (see
        :meth:`Callback.recorded_arrays`).

        Examples
        --------
        >>> import torch
        >>> from advprune.training import AdversarialTrainer
        >>> AdversarialTrainer(torch.nn.Linear(2, 2)).shard(3).tolist()
        [0, 1, 2]
        """
        rank, size = getattr(self, "rank_", 0), getattr(self, "world_size_", 1)
        return shard(n, rank, size)

    def train_step(self, x, y):
        """One optimisation step on a batch; returns ``(logits, loss)``.

        ``logits`` are those of the training forward pass on the input the
        objective is computed on (adversarial for PGD-AT and TRADES), which
        the online recorder reads. The attack is generated in eval mode so that
        its forward passes do not update batch-norm statistics. The forward
        passes that are differentiated go through ``network_`` (the model, or
        its DistributedDataParallel wrapper in a data-parallel run); the
        attack's go through ``model``.
        """
        model, network = self.model, self.network_
        if self.method == "standard":
            model.train()
            with self.autocast():
                logits = network(x)
                loss = F.cross_entropy(logits, y)
        else:
            model.eval()
            if self.method == "pgd":
                x_adv = self.attack(x, y)
                model.train()
                with self.autocast():
                    logits = network(x_adv)
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
                    clean_logits = network(x)
                    logits = network(x_adv)
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
        record_attack_steps=None,
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
        record_attack_steps : int or None, default=None
            PGD steps of the epoch recording's attack; ``None`` uses the
            training attack's.
        callbacks : sequence of Callback, default=()
            Further hooks, called after the recorder.
        checkpoint_dir : str, path or None, default=None
            After every epoch, the model, optimizer, schedule, RNG states,
            history, the dynamics recorded so far and the state of every
            callback with ``state_dict``/``load_state_dict`` methods (such as
            :class:`PoolTracker`) are saved there atomically (a temporary
            file, then a rename) with a SHA-256 digest of their bytes. A
            later call of the same run resumes from the last saved epoch and
            ends with the same result (bit-identical on the CPU) as an
            uninterrupted run. The same run: the same data, initial
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

        self.rank_, self.world_size_ = world()
        self.device_ = resolve_device(self.device)
        # Plain str and bool, so that numpy spellings hash alike in the run key.
        requested = str(self.amp) if isinstance(self.amp, str) else bool(self.amp)
        requested = "float16" if requested is True else requested
        self.amp_ = requested
        if requested == "float16" and self.device_.type != "cuda":
            self.amp_ = False
            warnings.warn(
                f"amp={requested!r} (float16 with gradient scaling) needs a CUDA "
                'device; training in float32. amp="bfloat16" runs on the CPU.',
                stacklevel=2,
            )
        if (
            requested == "bfloat16"
            and self.device_.type == "cuda"
            and not torch.cuda.is_bf16_supported(including_emulation=False)
        ):
            raise ValueError(
                f'amp="bfloat16", but {torch.cuda.get_device_name(self.device_)} '
                'has no bfloat16 arithmetic; use amp="float16".'
            )
        # Training and recording draw from separate streams, so that recording
        # (or not) leaves the training run unchanged.
        seeds = torch_generator(self.random_state)
        train_seed, record_seed = torch.randint(2**62, (2,), generator=seeds).tolist()
        self.generator_ = torch.Generator().manual_seed(train_seed)
        # A CPU generator would draw a GPU batch's random starts on one host
        # thread and copy them over (docs/gpu.rst).
        self.attack_generator_ = (
            self.generator_
            if self.device_.type == "cpu"
            else torch_generator(train_seed, device=self.device_)
        )
        self.model.to(self.device_)
        if self.device_.type == "cuda" and self.amp_:
            # Tensor-core convolutions run on channels-last data (docs/gpu.rst
            # has the measurement).
            self.model.to(memory_format=torch.channels_last)
        self.network_ = self._wrap(self.model)
        self._of_batch = None
        self.optimizer_ = self._make_optimizer()
        steps_per_epoch = len(batch_slices(n, self.batch_size))
        self.scheduler_ = self._make_schedule(self.optimizer_, steps_per_epoch)
        self.scaler_ = torch.amp.GradScaler(
            self.device_.type, enabled=self.amp_ == "float16"
        )
        self.history_ = []

        recorder = None
        if record == "epoch":
            recorder = EpochRecorder(
                record_indices,
                record_probas=record_probas,
                attack_steps=record_attack_steps,
                random_state=record_seed,
            )
        elif record == "online":
            recorder = OnlineRecorder(record_indices, record_probas=record_probas)
        hooks = [h for h in (recorder,) if h is not None] + list(callbacks)
        if self.verbose:
            hooks.append(_ProgressBar())
        # Callbacks that record something are saved with the checkpoint.
        stateful = [h for h in hooks if hasattr(h, "state_dict")]

        checkpoint = None
        if checkpoint_dir is not None:
            checkpoint = _Checkpoint(
                checkpoint_dir,
                self._run_key(
                    X_tensor,
                    y_tensor,
                    record_indices,
                    [record, record_probas, record_attack_steps],
                ),
            )
        for hook in hooks:
            hook.on_train_begin(self, X=X_tensor, y=y_tensor)
        first_epoch = 0
        if checkpoint is not None:
            first_epoch = checkpoint.restore(self, stateful)
            self._check_same_start(first_epoch, checkpoint_dir)
        for epoch in range(first_epoch, self.epochs):
            self.epoch_ = epoch
            self._run_epoch(X_tensor, y_tensor, hooks)
            for hook in hooks:
                hook.on_epoch_end(self, epoch=epoch)
            if self.world_size_ > 1:
                self._merge_recordings(hooks, epoch)
            if checkpoint is not None and self.rank_ == 0:
                checkpoint.save(self, stateful)
        for hook in hooks:
            hook.on_train_end(self)
        self.model.eval()
        self.network_ = self.model
        return None if recorder is None else recorder.dynamics()

    # -- data parallelism -------------------------------------------------------

    def _wrap(self, model):
        """The model in DistributedDataParallel in a data-parallel run, whose
        gradients are reduced weighted by each process's share of the batch."""
        if self.world_size_ == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        network = DistributedDataParallel(
            model,
            device_ids=[self.device_] if self.device_.type == "cuda" else None,
        )
        self._weights = GradientWeights()
        network.register_comm_hook(self._weights, weighted_allreduce)
        return network

    def _merge_recordings(self, hooks, epoch):
        """Every process ends the epoch with the same model state and the whole
        epoch of every callback's recordings."""
        with torch.no_grad():
            broadcast_buffers(self.model)
        for hook in hooks:
            for name, array in hook.recorded_arrays(epoch).items():
                array[...] = merge_disjoint(array, f"{type(hook).__name__}.{name}")

    def _check_same_start(self, first_epoch, checkpoint_dir):
        if self.world_size_ == 1:
            return
        starts = [None] * self.world_size_
        torch.distributed.all_gather_object(starts, first_epoch)
        if len(set(starts)) > 1:
            raise ValueError(
                f"checkpoint_dir {str(checkpoint_dir)!r}: the processes would "
                f"resume from different epochs {starts}; every process must see "
                "the same directory (a shared file system)."
            )

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

    def _run_key(self, X, y, record_indices, recording):
        """Fingerprint of a run: what changes its result, and nothing else.

        The data, the initial weights, what is recorded and how (``recording``:
        the kind, the probabilities, the measuring attack), the seed and every
        training parameter, numbers by value (``0.1`` and ``np.float64(0.1)``
        alike), ``bounds`` as validated, the device by its type (CPU and CUDA
        runs differ in their last bits; ``"auto"``, ``"cpu"`` or ``"cuda:0"``
        spell a type), AMP as it is applied, and ``augment`` by
        :func:`~advprune.training._augment.stable_identity`. Not ``verbose``.
        """
        params = {
            **training_params(self),
            # Epochs are cut by training/_batches.py's rule (version 2: a
            # last batch of one sample joins the one before).
            "batching": 2,
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
                _by_value(recording),
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
        for rows in batch_slices(len(X), self.batch_size):
            indices = order[rows]
            mine = indices[torch.from_numpy(self.shard(len(indices)))]
            xb, yb = self._batch(X, y, indices)
            if self.world_size_ > 1:
                self._of_batch = len(indices)
                self._weights.weight = len(mine) / len(indices)
            if len(mine):
                logits, loss = self.train_step(xb, yb)
            else:
                # A last batch with fewer rows than processes leaves this one
                # without a row, but every process takes part in each gradient
                # reduction: a stand-in row, its gradient weighted 0, unattacked.
                stand_in = indices[:1]
                logits, loss = self.train_step(
                    to_device(X[stand_in], self.device_),
                    to_device(y[stand_in], self.device_),
                )
                logits, loss = logits[:0], loss.detach() * 0
                yb = yb[:0]
            self._of_batch = None
            total_loss += loss.detach().float() * len(mine)
            correct += (logits.argmax(1) == yb).sum()
            for hook in hooks:
                hook.on_batch_end(self, indices=mine, logits=logits, y=yb)
        if self.world_size_ > 1:
            torch.distributed.all_reduce(total_loss)
            torch.distributed.all_reduce(correct)
        self.history_.append(
            {
                "epoch": self.epoch_,
                "loss": float(total_loss) / len(X),
                "train_accuracy": float(correct) / len(X),
                "seconds": time.perf_counter() - started,
            }
        )

    def _batch(self, X, y, indices):
        """This process's rows of a batch (all of them in a one-process run),
        augmented, on the device.

        In a data-parallel run the whole batch is augmented in every process,
        so that the augmentation draws the same numbers everywhere, as one
        process would; without augmentation only this process's rows are read.
        """
        rows = torch.from_numpy(self.shard(len(indices)))
        if self.augment is None:
            selected = indices[rows] if self.world_size_ > 1 else indices
            return to_device(X[selected], self.device_), to_device(
                y[selected], self.device_
            )
        xb = self.augment(to_device(X[indices], self.device_), self.generator_)
        rows = to_device(rows, self.device_)
        return xb[rows], to_device(y[indices], self.device_)[rows]


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
