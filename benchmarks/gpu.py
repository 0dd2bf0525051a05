r"""The GPU path, measured: adversarial training throughput, where its device
time goes, recording overhead, an end-to-end pruner fit on a memory-mapped
pool, resuming a run, and exact kNN on the device.

One script for a lent GPU (its sections took 186 s on an H200; docs/gpu.rst
has its tables), smoke-tested on the CPU at tiny size (``--tiny``, run by the
test suite)::

    python -m benchmarks.gpu --out gpu-results                # on the GPU
    python -m benchmarks.gpu --out gpu-results --sections pruner knn
    python -m benchmarks.gpu --tiny --device cpu --out /tmp/gpu

On an offline GPU machine whose Python has PyTorch, scikit-learn and the rest
but not faiss (an image with Python 3.12, say), bring faiss's wheel (18 MB) in
an ignored folder of the checkout, install it there and run from the
repository root, advprune imported from the checkout::

    echo /.whl/ >> .git/info/exclude          # here, with network
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 -d .whl faiss-cpu==1.15.1
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:$PWD python3 -m benchmarks.gpu --out gpu-results   # there

Sections, each a row group of the table printed last and a key of
``OUT/gpu.json`` (rewritten after each section; a section that fails is
recorded there, the others run, and the script exits non-zero):

1. ``peak``: the matrix-product rate of the chip, measured here (a square bf16
   product on CUDA, float32 on the CPU), the ceiling for what follows.
2. ``training``: PGD-10 adversarial training of PreAct-ResNet-18 on 32x32x3
   synthetic images at batch 512, images/s through
   :class:`advprune.training.AdversarialTrainer` (float16 AMP with its
   gradient scaler, bfloat16 AMP and float32) and through a bare loop written
   here (the same model, attack and optimizer step; data resident on the
   device; float16 with a gradient scaler and bfloat16, each also
   channels_last; the trainer's former host path; cudnn.benchmark), and
   TFLOP/s from FLOPs counted by ``torch.utils.flop_counter`` against the
   peak.
3. ``profile``: the trainer's kernels over one epoch under the PyTorch
   profiler, their device time grouped by kind, and the convolutions' rate.
4. ``overhead``: the trainer's epoch time (bfloat16 AMP on CUDA) with epoch
   recording, online recording and held-out pool tracking, over none.
5. ``pruner``: :class:`advprune.AdversarialPruner` (the default strategy,
   bfloat16 AMP on CUDA) on a uint8 pool written to disk here and read as a
   memory map, 5 % scored: seconds per stage and peak device memory; then
   passes over the pool through the fitted embedding (``embed``,
   :func:`~advprune.training.batched_forward` with several ``n_workers``, and
   the serial loop it replaced) against forward passes on device-resident
   data, which says how busy the host keeps the device, with NVML's
   utilisation during the default pass.
6. ``resume``: a run with epoch recording and adversarial pool tracking,
   interrupted after its first epoch and resumed from its checkpoint, against
   the same run uninterrupted.
7. ``knn``: exact kNN extrapolation (12 neighbours) by
   :class:`advprune.extrapolation.ImportanceExtrapolator` with ``device=`` (matrix
   products and top-k on the device, fit included; and its searches alone)
   against its FAISS search on the CPU (timed on a slice of the queries), with
   the largest difference of their predictions on that slice.

Images/s are medians over timed repetitions after a warm-up (the passes over
the pool: one timed pass each); device time is taken after synchronising.
"""

import argparse
import contextlib
import dataclasses
import os
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from advprune import AdversarialPruner
from advprune._device_search import DeviceReferences
from advprune.datasets import ImageArray
from advprune.extrapolation import ImportanceExtrapolator
from advprune.models import build_model
from advprune.training import (
    AdversarialTrainer,
    Callback,
    PoolTracker,
    batched_forward,
)

from ._common import environment, save_json


@dataclasses.dataclass(frozen=True)
class Sizes:
    model: str
    image: int
    batch: int
    batches: int  # timed batches per repetition
    repeats: int
    matmul: int
    pool: int
    scored: float
    pool_epochs: int
    tracked_pool: int
    queries: int
    references: int
    dims: int
    cpu_queries: int


FULL = Sizes(
    model="preact-resnet18",
    image=32,
    batch=512,
    batches=10,
    repeats=3,
    matmul=8192,
    pool=200_000,
    scored=0.05,
    pool_epochs=3,
    tracked_pool=50_000,
    queries=1_000_000,
    references=50_000,
    dims=512,
    cpu_queries=20_000,
)
TINY = Sizes(
    model="small-cnn",
    image=16,
    batch=16,
    batches=2,
    repeats=2,
    matmul=128,
    pool=400,
    scored=0.1,
    pool_epochs=1,
    tracked_pool=64,
    queries=2_000,
    references=200,
    dims=16,
    cpu_queries=500,
)
EPS, STEPS, CLASSES = 8 / 255, 10, 10
# The trainer's mixed precision where a section runs one (CUDA; the training
# section also runs it on the CPU so that the smoke test goes through it).
AMP = "bfloat16"


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def once(function, device):
    """Wall seconds of one run of ``function()``, the device synchronised."""
    synchronize(device)
    started = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - started


def timed(function, device, repeats):
    """Median of :func:`once` over ``repeats`` runs after one warm-up run."""
    function()
    return float(np.median([once(function, device) for _ in range(repeats)]))


def peak(sizes, device):
    """The measured matrix-product rate, TFLOP/s."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    generator = torch.Generator(device=device).manual_seed(0)
    n = sizes.matmul
    a, b = (
        torch.randn(n, n, device=device, dtype=dtype, generator=generator) for _ in "ab"
    )
    products = 20 * sizes.batches  # long enough to reach and hold full clock

    def run():
        for _ in range(products):
            a @ b

    run()  # a further warm-up
    seconds = timed(run, device, sizes.repeats)
    return {"dtype": str(dtype), "n": n, "tflops": 2 * n**3 * products / seconds / 1e12}


def data(sizes, n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, 3, sizes.image, sizes.image)).astype(np.float32)
    return X, rng.integers(0, CLASSES, n)


def model_for(sizes):
    return build_model(
        sizes.model, (3, sizes.image, sizes.image), CLASSES, random_state=0
    )


def bare_step(model, optimizer, scaler, x, y, dtype, starts=None):
    """One PGD-10 adversarial training step as a user would write it: the
    attack in eval mode (unscaled, as the trainer's), the update in train mode
    through the gradient scaler, random starts drawn on the device unless
    ``starts`` gives them."""
    autocast = torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None)
    model.eval()
    delta = (torch.rand_like(x) * 2 - 1) * EPS if starts is None else starts
    for _ in range(STEPS):
        delta.requires_grad_(True)
        with autocast:
            loss = F.cross_entropy(model((x + delta).clamp(0, 1)), y)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + 2.5 * EPS / STEPS * grad.sign()).clamp(-EPS, EPS)
    model.train()
    with autocast:
        loss = F.cross_entropy(model((x + delta).clamp(0, 1)), y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def bare_loop(sizes, device, dtype, channels_last=False, host_path=False):
    """Images/s of the bare loop on device-resident batches; ``host_path``:
    batches gathered on the host and copied from pageable memory, random
    starts drawn on the CPU and copied likewise, as the trainer did before
    it staged its copies through pinned memory and drew its starts on the
    device."""
    model = model_for(sizes).to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    X, y = data(sizes, sizes.batch * sizes.batches)
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    if not host_path:
        X = X.to(device).contiguous(memory_format=memory_format)
        y = y.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    generator = torch.Generator().manual_seed(0)

    def epoch():
        order = torch.randperm(len(X), generator=generator)
        for start in range(0, len(X), sizes.batch):
            rows = order[start : start + sizes.batch]
            if not host_path:
                bare_step(model, optimizer, scaler, X[rows], y[rows], dtype)
                continue
            x = X[rows].to(device, non_blocking=True)
            unit = torch.rand(x.shape, generator=generator)
            starts = ((2 * unit - 1) * EPS).to(device)
            yb = y[rows].to(device, non_blocking=True)
            bare_step(model, optimizer, scaler, x, yb, dtype, starts=starts)

    return len(X) / timed(epoch, device, sizes.repeats)


class _EpochClock(Callback):
    """Wall time between the ends of epochs, hooks included (the trainer's own
    epoch seconds stop before the hooks that record and track run)."""

    def __init__(self, device):
        self.device, self.ends = device, []

    def on_train_begin(self, trainer, **kwargs):
        self.ends = [time.perf_counter()]

    def on_epoch_end(self, trainer, **kwargs):
        synchronize(self.device)
        self.ends.append(time.perf_counter())


def trainer_epochs(sizes, device, amp, n, *, record=None, callbacks=()):
    """The trainer's median epoch seconds after its first epoch, recording
    and callbacks included."""
    X, y = data(sizes, n)
    trainer = AdversarialTrainer(
        model_for(sizes),
        eps=EPS,
        attack_steps=STEPS,
        epochs=1 + sizes.repeats,
        batch_size=sizes.batch,
        lr=0.1,
        device=device,
        amp=amp,
        random_state=0,
    )
    clock = _EpochClock(device)
    trainer.fit(X, y, record=record, callbacks=[*callbacks, clock])
    return float(np.median(np.diff(clock.ends)[1:]))


def flops_per_image(sizes, device):
    """FLOPs of one PGD-10 training step per image, counted by torch."""
    model = model_for(sizes).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    X, y = data(sizes, sizes.batch)
    x, y = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    counter = FlopCounterMode(display=False)
    with counter:
        bare_step(model, optimizer, scaler, x, y, None)
    return counter.get_total_flops() / sizes.batch


def training(sizes, device, peak_tflops):
    n = sizes.batch * sizes.batches
    flops = flops_per_image(sizes, device)
    rows = {}
    amps = ("float16", "bfloat16", False) if device.type == "cuda" else (False, AMP)
    for amp in amps:
        seconds = trainer_epochs(sizes, device, amp, n)
        rows[f"AdversarialTrainer, {f'{amp} AMP' if amp else 'float32'}"] = n / seconds
    dtypes = (torch.float16, torch.bfloat16) if device.type == "cuda" else (None,)
    for dtype in dtypes:
        for channels_last in (False, True):
            name = "float32" if dtype is None else str(dtype).removeprefix("torch.")
            label = f"bare loop, {name}{', channels_last' if channels_last else ''}"
            rows[label] = bare_loop(sizes, device, dtype, channels_last)
    dtype = torch.bfloat16 if device.type == "cuda" else None
    name = "float32" if dtype is None else "bfloat16"
    rows[f"bare loop, {name}, the trainer's former host path"] = bare_loop(
        sizes, device, dtype, host_path=True
    )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        try:
            rows["bare loop, bfloat16, channels_last, cudnn.benchmark"] = bare_loop(
                sizes, device, dtype, channels_last=True
            )
        finally:
            torch.backends.cudnn.benchmark = False
    return {
        "flops_per_image": flops,
        "images_per_second": rows,
        "tflops": {k: v * flops / 1e12 for k, v in rows.items()},
        "fraction_of_peak": {
            k: v * flops / 1e12 / peak_tflops for k, v in rows.items()
        },
    }


# Kernel kinds by what their names contain (lower case), first match wins:
# cuDNN's layout conversions, then its convolutions and other matrix products,
# then batch normalisation; the rest is elementwise work and reductions.
KERNEL_KINDS = (
    ("layout conversions", ("nchwtonhwc", "nhwctonchw", "transpose")),
    (
        "convolutions and matrix products",
        ("conv", "xmma", "implicit_gemm", "fprop", "dgrad", "wgrad", "gemm", "cutlass"),
    ),
    ("batch normalisation", ("bn_", "batch_norm", "batchnorm", "welford")),
)


def kernel_kind(name):
    lowered = name.lower()
    for kind, parts in KERNEL_KINDS:
        if any(part in lowered for part in parts):
            return kind
    return "elementwise, reductions and the rest"


def profile(sizes, device, flops_per_image):
    """Where the device's time goes in the trainer's PGD-10 training (its
    default on this device): the kernels of one epoch, after a warm-up
    epoch, grouped by kind; the convolutions' own rate from the FLOPs
    counted (nearly all of them convolutions)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    amp = device.type == "cuda" and AMP
    X, y = data(sizes, sizes.batch * sizes.batches)

    def fit():
        AdversarialTrainer(
            model_for(sizes),
            eps=EPS,
            attack_steps=STEPS,
            epochs=1,
            batch_size=sizes.batch,
            device=device,
            amp=amp,
            random_state=0,
        ).fit(X, y, record=None)

    fit()
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    synchronize(device)
    started = time.perf_counter()
    with profiler(activities=activities) as trace:
        fit()
        synchronize(device)
    wall = time.perf_counter() - started
    kernels = {
        event.key: event.self_device_time_total / 1e6
        for event in trace.key_averages()
        if event.device_type == torch.autograd.DeviceType.CUDA
        and event.self_device_time_total > 0
    }
    kinds = {}
    for name, seconds in kernels.items():
        kind = kernel_kind(name)
        kinds[kind] = kinds.get(kind, 0.0) + seconds
    busy = sum(kernels.values())
    convolutions = kinds.get("convolutions and matrix products")
    top = sorted(kernels.items(), key=lambda item: -item[1])[:8]
    return {
        "images": len(X),
        "wall_seconds_profiled": wall,
        "kernel_seconds": busy,
        "kernel_seconds_by_kind": kinds,
        "convolution_tflops": (
            flops_per_image * len(X) / convolutions / 1e12 if convolutions else None
        ),
        "top_kernels": [[name, seconds] for name, seconds in top],
    }


def overhead(sizes, device):
    """Epoch seconds with each kind of recording over none (bfloat16 AMP on
    CUDA)."""
    amp = device.type == "cuda" and AMP
    n = sizes.batch * sizes.batches
    base = trainer_epochs(sizes, device, amp, n)
    pool, labels = data(sizes, sizes.tracked_pool, seed=1)
    ratios = {
        "epoch recording": trainer_epochs(sizes, device, amp, n, record="epoch") / base,
        "online recording": trainer_epochs(sizes, device, amp, n, record="online")
        / base,
        f"pool tracking ({sizes.tracked_pool:,} samples, every epoch)": trainer_epochs(
            sizes, device, amp, n, callbacks=[PoolTracker(pool, labels, every=1)]
        )
        / base,
    }
    return {"base_epoch_seconds": base, "ratio": ratios}


def write_pool(sizes, directory):
    """A uint8 pool (N, H, W, 3) written chunk by chunk to a .npy file."""
    path = Path(directory) / "pool.npy"
    images = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.uint8, shape=(sizes.pool, sizes.image, sizes.image, 3)
    )
    rng = np.random.default_rng(2)
    for start in range(0, sizes.pool, 8192):
        rows = slice(start, start + 8192)
        images[rows] = rng.integers(0, 256, images[rows].shape, dtype=np.uint8)
    images.flush()
    del images
    return path, rng.integers(0, CLASSES, sizes.pool)


class Utilization:
    """The GPU's mean utilisation (percent of time a kernel ran, as NVML
    reports it) sampled every 50 ms while the block runs; None without NVML
    or on the CPU."""

    def __init__(self, device):
        self.device, self.samples, self.mean = device, [], None

    def __enter__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        if self.device.type == "cuda":
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.05):
            try:
                self.samples.append(torch.cuda.utilization(self.device))
            except Exception:  # no NVML: nothing to report
                return

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.samples:
            self.mean = float(np.mean(self.samples))


def serial_forward(model, X, batch_size, device):
    """batched_forward as it was before reading ahead: each batch read,
    converted and copied from pageable memory, and its output copied back,
    before the next is read."""
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            rows = np.array(X[start : start + batch_size], dtype=np.float32)
            model(torch.from_numpy(rows).to(device)).float().cpu().numpy()


def pruner(sizes, device, directory):
    path, labels = write_pool(sizes, directory)
    pool = ImageArray(np.load(path, mmap_mode="r"))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    fitted = AdversarialPruner(
        model=sizes.model,
        subset_size=sizes.scored,
        epochs=sizes.pool_epochs,
        batch_size=sizes.batch,
        min_steps=None,  # the scoring run at batch sizes.batch, not a cut one
        device=device,
        amp=device.type == "cuda" and AMP,
        random_state=0,
    ).fit(pool, labels)
    fit_seconds = time.perf_counter() - started
    fit_memory = (
        torch.cuda.max_memory_allocated(device) / 2**30
        if device.type == "cuda"
        else None
    )
    # Passes over the whole pool through the pruner's embedding (the scoring
    # model's penultimate features, float32), at its embedding batch, after
    # a warm-up pass over a few batches (the first float32 forward passes
    # after the bfloat16 training pay cuDNN's and CUDA's start-up).
    batch = 4 * sizes.batch
    model = fitted.embedding_.eval()
    batched_forward(
        model.to(device), pool[: 4 * batch], batch_size=batch, device=device
    )

    def forward(n_workers):
        return lambda: batched_forward(
            model.to(device), pool, batch_size=batch, device=device, n_workers=n_workers
        )

    seconds = {
        "AdversarialPruner.embed": once(lambda: fitted.embed(pool), device),
        "serial loop (batched_forward before this change)": once(
            lambda: serial_forward(model.to(device), pool, batch, device), device
        ),
    }
    for n_workers in (0, 2, 8):
        seconds[f"batched_forward, n_workers={n_workers}"] = once(
            forward(n_workers), device
        )
    with Utilization(device) as busy:
        seconds["batched_forward, default"] = once(forward(None), device)
    # The same forward passes on device-resident data: the rate the device
    # could sustain if the host kept up.
    head = torch.from_numpy(pool[: min(sizes.pool, 16 * batch)]).to(device)
    model.to(device)

    def resident():
        with torch.no_grad():
            for start in range(0, len(head), batch):
                model(head[start : start + batch])

    resident_rate = len(head) / timed(resident, device, sizes.repeats)
    rates = {name: sizes.pool / value for name, value in seconds.items()}
    return {
        "pool": sizes.pool,
        "scored": int(fitted.scored_mask_.sum()),
        "fit_seconds": fit_seconds,
        "timings": fitted.timings_,
        "fraction_of_direct_forward_passes": fitted.cost_["fraction_of_direct"],
        "pass_images_per_second": rates,
        "resident_forward_images_per_second": resident_rate,
        "device_busy_estimate": {
            name: rate / resident_rate for name, rate in rates.items()
        },
        "nvml_utilization_percent": busy.mean,
        "peak_device_memory_gib": fit_memory,
    }


def knn(sizes, device):
    rng = np.random.default_rng(3)
    references = rng.standard_normal((sizes.references, sizes.dims), np.float32)
    scores = rng.uniform(size=sizes.references)
    queries = rng.standard_normal((sizes.queries, sizes.dims), np.float32)
    synchronize(device)
    started = time.perf_counter()
    on_device = (
        ImportanceExtrapolator(n_neighbors=12, batch_size=16384, device=device)
        .fit(references, scores)
        .predict(queries)
    )
    synchronize(device)
    device_seconds = time.perf_counter() - started
    # The device's share of that: the same searches alone (a float32 product
    # and a top-k per chunk, the transfers included), without the host's
    # validation, float64 re-ranking of near-ties and averaging.
    search = DeviceReferences(references, device)
    search_seconds = once(
        lambda: [
            search.search(queries[start : start + 16384], 13)
            for start in range(0, len(queries), 16384)
        ],
        device,
    )
    # At least one chunk of queries per CPU thread of the extrapolator, so
    # the timed slice keeps every core busy as the whole would.
    chunk = ImportanceExtrapolator().batch_size
    part = queries[: max(sizes.cpu_queries, chunk * (os.cpu_count() or 1))]
    started = time.perf_counter()
    on_cpu = (
        ImportanceExtrapolator(n_neighbors=12).fit(references, scores).predict(part)
    )
    cpu_seconds = (time.perf_counter() - started) * sizes.queries / len(part)
    return {
        "queries": sizes.queries,
        "references": sizes.references,
        "dims": sizes.dims,
        "device_seconds": device_seconds,
        "device_search_seconds": search_seconds,
        "cpu_queries": len(part),
        "cpu_seconds_extrapolated": cpu_seconds,
        "speed_up": cpu_seconds / device_seconds,
        "max_abs_difference": float(np.abs(on_device[: len(part)] - on_cpu).max()),
    }


class _Interrupted(Exception):
    pass


class _InterruptAfter(Callback):
    """Stops a run once epoch ``epoch`` is checkpointed (the checkpoint is
    saved after the callbacks' epoch ends, so this raises at the next
    batch)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_batch_end(self, trainer, **kwargs):
        if trainer.epoch_ > self.epoch:
            raise _Interrupted


def resume(sizes, device, directory):
    """A run interrupted after its first epoch and resumed from its
    checkpoint, against the same run uninterrupted: the resumed run must
    load on this device, and its model, epoch recording and pool tracking
    should match (bit for bit where the device's kernels are deterministic).
    """
    X, y = data(sizes, 4 * sizes.batch)
    pool, labels = data(sizes, 2 * sizes.batch, seed=4)
    amp = device.type == "cuda" and AMP

    def run(checkpoint_dir=None, stop=None):
        trainer = AdversarialTrainer(
            model_for(sizes),
            eps=EPS,
            attack_steps=2,
            epochs=3,
            batch_size=sizes.batch,
            device=device,
            amp=amp,
            random_state=0,
        )
        tracker = PoolTracker(
            pool, labels, adversarial=True, attack_steps=2, random_state=0
        )
        callbacks = [tracker] if stop is None else [tracker, _InterruptAfter(stop)]
        dynamics = trainer.fit(
            X, y, record="epoch", callbacks=callbacks, checkpoint_dir=checkpoint_dir
        )
        return trainer, dynamics, tracker

    whole, whole_dynamics, whole_tracker = run()
    with contextlib.suppress(_Interrupted):
        run(directory, stop=0)
    resumed, dynamics, tracker = run(directory)
    weights = [
        float((a.float() - b.float()).abs().max())
        for a, b in zip(
            whole.model.state_dict().values(),
            resumed.model.state_dict().values(),
            strict=True,
        )
    ]
    return {
        "epochs_resumed": len(resumed.history_),
        "max_abs_weight_difference": max(weights),
        "max_abs_recording_difference": float(
            np.abs(whole_dynamics.adversarial - dynamics.adversarial).max()
        ),
        "max_abs_tracking_difference": float(
            max(
                np.abs(whole_tracker.series_ - tracker.series_).max(),
                np.abs(whole_tracker.adversarial_ - tracker.adversarial_).max(),
            )
        ),
    }


def table(result):
    lines = [f"device: {result['device']}"]
    for name, section in result.items():
        if isinstance(section, dict) and "error" in section:
            lines.append(f"{name}: FAILED, {section['error'].strip().splitlines()[-1]}")
    if "seconds" in result:
        lines.append(
            "section seconds: "
            + ", ".join(f"{k} {v:.0f}" for k, v in result["seconds"].items())
        )
    peak_ = result.get("peak", {})
    if "tflops" in peak_:
        lines.append(
            f"peak matrix product ({peak_['dtype']}): {peak_['tflops']:.3g} TFLOP/s"
        )
    t = result.get("training", {})
    if "images_per_second" in t:
        lines.append(
            f"PGD-{STEPS} training, {t['flops_per_image'] / 1e9:.3g} GFLOP per image "
            f"(% of the {peak_.get('dtype')} peak; float32 convolutions use TF32 on "
            "CUDA):"
        )
        for name, rate in t["images_per_second"].items():
            lines.append(
                f"  {name:<58} {rate:8.0f} img/s {t['tflops'][name]:7.3g} TFLOP/s "
                f"{100 * t['fraction_of_peak'][name]:5.1f}%"
            )
    f = result.get("profile", {})
    if "kernel_seconds" in f:
        rate = f["convolution_tflops"]
        lines.append(
            f"device time of one epoch's kernels ({f['images']:,} images): "
            f"{f['kernel_seconds']:.2f} s"
            + ("" if rate is None else f"; convolutions alone {rate:.3g} TFLOP/s")
        )
        for kind, seconds in sorted(
            f["kernel_seconds_by_kind"].items(), key=lambda item: -item[1]
        ):
            lines.append(f"  {kind:<40} {100 * seconds / f['kernel_seconds']:5.1f}%")
    o = result.get("overhead", {})
    if "ratio" in o:
        lines.append(
            f"recording overhead (epoch {o['base_epoch_seconds']:.2f} s without):"
        )
        for name, ratio in o["ratio"].items():
            lines.append(f"  {name:<60} {ratio:5.2f}x")
    p = result.get("pruner", {})
    if "timings" in p:
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in p["timings"].items())
        memory = p["peak_device_memory_gib"]
        lines.append(
            f"pruner, {p['pool']:,}-image memmapped pool, {p['scored']:,} scored: "
            f"{p['fit_seconds']:.1f} s ({stages})"
            + ("" if memory is None else f"; peak device memory {memory:.1f} GiB")
        )
        lines.append(
            f"  passes over the pool (on resident data "
            f"{p['resident_forward_images_per_second']:.0f} img/s; NVML busy "
            f"{p['nvml_utilization_percent']}% for the default):"
        )
        for name, rate in p["pass_images_per_second"].items():
            lines.append(
                f"    {name:<52} {rate:8.0f} img/s, busy "
                f"~{100 * p['device_busy_estimate'][name]:3.0f}%"
            )
    r = result.get("resume", {})
    if "epochs_resumed" in r:
        lines.append(
            f"resumed run: {r['epochs_resumed']} epochs; max |difference| from the "
            f"uninterrupted run: weights {r['max_abs_weight_difference']:.2g}, "
            f"recording {r['max_abs_recording_difference']:.2g}, tracking "
            f"{r['max_abs_tracking_difference']:.2g}"
        )
    k = result.get("knn", {})
    if "device_seconds" in k:
        lines.append(
            f"exact kNN, {k['queries']:,} queries, {k['references']:,} references, "
            f"d={k['dims']}: device {k['device_seconds']:.1f} s (its searches alone "
            f"{k['device_search_seconds']:.1f} s), CPU "
            f"{k['cpu_seconds_extrapolated']:.1f} s (timed on {k['cpu_queries']:,} "
            f"queries), {k['speed_up']:.1f}x; max |difference| "
            f"{k['max_abs_difference']:.2g}"
        )
    return "\n".join(lines)


def versions():
    import faiss
    import sklearn

    return {
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "faiss": faiss.__version__,
    }


SECTIONS = ("peak", "training", "profile", "overhead", "pruner", "resume", "knn")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory of gpu.json")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke-test sizes")
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=SECTIONS,
        help="the sections to run (default: all; training needs peak, profile "
        "needs training)",
    )
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else FULL
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else "cpu",
        "sizes": dataclasses.asdict(sizes),
        "environment": environment(),
        "versions": versions(),
        "seconds": {},
    }
    # The pool and checkpoints go to the system's temporary directory, not
    # beside the results.
    with tempfile.TemporaryDirectory() as work:
        runs = {
            "peak": lambda: peak(sizes, device),
            "training": lambda: training(sizes, device, result["peak"]["tflops"]),
            "profile": lambda: profile(
                sizes, device, result["training"]["flops_per_image"]
            ),
            "overhead": lambda: overhead(sizes, device),
            "pruner": lambda: pruner(sizes, device, work),
            "resume": lambda: resume(sizes, device, Path(work) / "checkpoint"),
            "knn": lambda: knn(sizes, device),
        }
        # A section that fails is recorded and the others still run; the
        # JSON is rewritten after each, so a run cut short keeps what it got.
        for name in (name for name in SECTIONS if name in args.sections):
            started = time.perf_counter()
            try:
                result[name] = runs[name]()
            except Exception:
                result[name] = {"error": traceback.format_exc()}
                print(result[name]["error"], file=sys.stderr, flush=True)
            result["seconds"][name] = time.perf_counter() - started
            print(f"{name}: {result['seconds'][name]:.0f} s", flush=True)
            save_json(out / "gpu.json", result)
    print(table(result))
    failed = [name for name in SECTIONS if "error" in result.get(name, {})]
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
