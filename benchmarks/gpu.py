r"""The GPU path, measured: adversarial training throughput, recording overhead,
an end-to-end pruner fit on a memory-mapped pool, and exact kNN on the device.

One script for a lent GPU (sized for 8 minutes on an H200, by estimate: it
has not run on one yet), written and smoke-tested on the CPU at tiny size
(``--tiny``, run by the test suite)::

    python -m benchmarks.gpu --out gpu-results                # on the GPU
    python -m benchmarks.gpu --tiny --device cpu --out /tmp/gpu

On an offline GPU machine whose Python has PyTorch, scikit-learn and the rest
but not faiss (an image with Python 3.12, say), bring faiss's wheel (18 MB) in
an ignored folder of the checkout, install it there and run from the
repository root, advprune imported from the checkout::

    echo /.whl/ >> .git/info/exclude          # here, with network
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 -d .whl faiss-cpu==1.15.1
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site python3 -m benchmarks.gpu --out gpu-results   # there

Sections, each a row group of the table printed last and a key of
``OUT/gpu.json``:

1. ``peak``: the matrix-product rate of the chip, measured here (a square bf16
   product on CUDA, float32 on the CPU), the ceiling for what follows.
2. ``training``: PGD-10 adversarial training of PreAct-ResNet-18 on 32x32x3
   synthetic images at batch 512, images/s through
   :class:`advprune.training.AdversarialTrainer` (float16 AMP with its
   gradient scaler, bfloat16 AMP and float32) and through a bare loop written
   here (the same model, attack and optimizer step; data resident on the
   device; float16 with a gradient scaler and bfloat16, each also
   channels_last, which the trainer does not offer), and TFLOP/s from FLOPs
   counted by ``torch.utils.flop_counter`` against the peak.
3. ``overhead``: the trainer's epoch time (bfloat16 AMP on CUDA) with epoch
   recording, online recording and held-out pool tracking, over none.
4. ``pruner``: :class:`advprune.AdversarialPruner` (the default strategy,
   bfloat16 AMP on CUDA) on a uint8 pool written to disk here and read as a
   memory map, 5 % scored:
   seconds per stage, embedding images/s against forward passes on
   device-resident data (how busy the host keeps the device), peak device
   memory.
5. ``knn``: exact kNN extrapolation (12 neighbours) by
   :class:`advprune.extrapolation.ImportanceExtrapolator` with ``device=`` (matrix
   products and top-k on the device, fit included) against its FAISS search on
   the CPU (timed on a slice of the queries), with the largest difference
   of their predictions on that slice.

Images/s are medians over timed repetitions after a warm-up; device time is
taken after synchronising.
"""

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from advprune import AdversarialPruner
from advprune.datasets import ImageArray
from advprune.extrapolation import ImportanceExtrapolator
from advprune.models import build_model
from advprune.training import AdversarialTrainer, Callback, PoolTracker

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


def timed(function, device, repeats):
    """Median wall time of ``function()`` over ``repeats`` runs after one
    warm-up run, synchronising the device around each."""
    function()
    times = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def peak(sizes, device):
    """The measured matrix-product rate, TFLOP/s."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    generator = torch.Generator(device=device).manual_seed(0)
    n = sizes.matmul
    a, b = (
        torch.randn(n, n, device=device, dtype=dtype, generator=generator) for _ in "ab"
    )
    products = 2 * sizes.repeats * sizes.batches  # long enough to reach full clock

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


def bare_step(model, optimizer, scaler, x, y, dtype):
    """One PGD-10 adversarial training step as a user would write it: the
    attack in eval mode (unscaled, as the trainer's), the update in train mode
    through the gradient scaler, random starts drawn on the device."""
    autocast = torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None)
    model.eval()
    delta = (torch.rand_like(x) * 2 - 1) * EPS
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


def bare_loop(sizes, device, dtype, channels_last):
    """Images/s of the bare loop on device-resident batches."""
    model = model_for(sizes).to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    X, y = data(sizes, sizes.batch * sizes.batches)
    X = torch.from_numpy(X).to(device).contiguous(memory_format=memory_format)
    y = torch.from_numpy(y).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def epoch():
        for start in range(0, len(X), sizes.batch):
            rows = slice(start, start + sizes.batch)
            bare_step(model, optimizer, scaler, X[rows], y[rows], dtype)

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
    return {
        "flops_per_image": flops,
        "images_per_second": rows,
        "tflops": {k: v * flops / 1e12 for k, v in rows.items()},
        "fraction_of_peak": {
            k: v * flops / 1e12 / peak_tflops for k, v in rows.items()
        },
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
    synchronize(device)
    started = time.perf_counter()
    fitted.embed(pool)
    synchronize(device)
    embed_rate = sizes.pool / (time.perf_counter() - started)
    # The same forward passes on device-resident data: the rate the device
    # could sustain if the host kept up.
    head = torch.from_numpy(np.asarray(pool[: min(sizes.pool, 16 * sizes.batch)])).to(
        device
    )
    model = fitted.model_.to(device).eval()

    def forward():
        with torch.no_grad():
            for start in range(0, len(head), 4 * sizes.batch):
                model(head[start : start + 4 * sizes.batch])

    resident_rate = len(head) / timed(forward, device, sizes.repeats)
    return {
        "pool": sizes.pool,
        "scored": int(fitted.scored_mask_.sum()),
        "fit_seconds": fit_seconds,
        "timings": fitted.timings_,
        "fraction_of_direct_forward_passes": fitted.cost_["fraction_of_direct"],
        "embedding_images_per_second": embed_rate,
        "resident_forward_images_per_second": resident_rate,
        "device_busy_estimate": embed_rate / resident_rate,
        "peak_device_memory_gib": fit_memory,
    }


def knn(sizes, device):
    rng = np.random.default_rng(3)
    references = rng.normal(size=(sizes.references, sizes.dims)).astype(np.float32)
    scores = rng.uniform(size=sizes.references)
    queries = rng.normal(size=(sizes.queries, sizes.dims)).astype(np.float32)
    synchronize(device)
    started = time.perf_counter()
    on_device = (
        ImportanceExtrapolator(n_neighbors=12, batch_size=16384, device=device)
        .fit(references, scores)
        .predict(queries)
    )
    synchronize(device)
    device_seconds = time.perf_counter() - started
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
        "cpu_queries": len(part),
        "cpu_seconds_extrapolated": cpu_seconds,
        "speed_up": cpu_seconds / device_seconds,
        "max_abs_difference": float(np.abs(on_device[: len(part)] - on_cpu).max()),
    }


def table(result):
    peak_, t, o = result["peak"], result["training"], result["overhead"]
    p, k = result["pruner"], result["knn"]
    lines = [
        f"device: {result['device']}",
        f"peak matrix product ({peak_['dtype']}): {peak_['tflops']:.3g} TFLOP/s",
        f"PGD-{STEPS} training, {t['flops_per_image'] / 1e9:.3g} GFLOP per image "
        f"(% of the {peak_['dtype']} peak; float32 convolutions use TF32 on CUDA):",
    ]
    for name, rate in t["images_per_second"].items():
        lines.append(
            f"  {name:<42} {rate:10.0f} img/s {t['tflops'][name]:8.3g} TFLOP/s "
            f"{100 * t['fraction_of_peak'][name]:5.1f}% of peak"
        )
    lines.append(f"recording overhead (epoch {o['base_epoch_seconds']:.2f} s without):")
    for name, ratio in o["ratio"].items():
        lines.append(f"  {name:<60} {ratio:5.2f}x")
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in p["timings"].items())
    memory = p["peak_device_memory_gib"]
    lines += [
        f"pruner, {p['pool']:,}-image memmapped pool, {p['scored']:,} scored: "
        f"{p['fit_seconds']:.1f} s ({stages})",
        f"  embedding {p['embedding_images_per_second']:.0f} img/s, on resident "
        f"data {p['resident_forward_images_per_second']:.0f} img/s: busy "
        f"~{100 * p['device_busy_estimate']:.0f}%"
        + ("" if memory is None else f"; peak device memory {memory:.1f} GiB"),
        f"exact kNN, {k['queries']:,} queries, {k['references']:,} references, "
        f"d={k['dims']}: device {k['device_seconds']:.1f} s, CPU "
        f"{k['cpu_seconds_extrapolated']:.1f} s (timed on {k['cpu_queries']:,} "
        f"queries), {k['speed_up']:.1f}x; max |difference| "
        f"{k['max_abs_difference']:.2g}",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory of gpu.json")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke-test sizes")
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else FULL
    device = torch.device(args.device)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    }
    result["sizes"] = dataclasses.asdict(sizes)
    result["peak"] = peak(sizes, device)
    result["training"] = training(sizes, device, result["peak"]["tflops"])
    result["overhead"] = overhead(sizes, device)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out) as work:
        result["pruner"] = pruner(sizes, device, work)
    result["knn"] = knn(sizes, device)
    result["environment"] = environment()
    save_json(Path(args.out) / "gpu.json", result)
    print(table(result))


if __name__ == "__main__":
    main()
