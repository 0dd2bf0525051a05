"""Streaming a memory-mapped pool of a million uint8 images through the pruner.

Writes a pool of ``--n`` (default 1,000,000) uint8 images of 32x32x3 to disk
(4 class-dependent colour layouts per class plus per-image noise, so that
neighbours in embedding space mean something), opens it with
:func:`advprune.datasets.load_pool` as an :class:`~advprune.datasets.ImageArray`
over a read-only memory map, and runs ``AdversarialPruner.fit`` on it: a small
scoring run (``--subset-size`` images, one epoch of PGD training of a
``SmallCNN``, score ``"mean_loss"``), then the part this benchmark measures,
the embedding of all rows by the scoring model's penultimate features and the
extrapolation of the scores to every unscored row, ``--chunk-size`` rows at a
time. The scores are written to ``--out`` with
:func:`advprune.datasets.save_npy_chunked` (temporary file, then rename).

Reported in ``benchmarks/results/streaming.json`` (written atomically): peak
resident set size of the process (``ru_maxrss``) and the largest sampled
resident set during ``fit`` (anonymous and file-backed parts), the time and
throughput (samples per second over all ``n`` rows) of the embedding and the
extrapolation as ``AdversarialPruner.timings_`` counts them, and the wall time
of every phase.

Run::

    python -m benchmarks.streaming                      # 1,000,000 images, ~3 GB
    python -m benchmarks.streaming --n 100000           # quicker
    python -m benchmarks.streaming --n 200000 --no-release-pages   # the page cost
"""

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

import advprune
from advprune import AdversarialPruner
from advprune.datasets import load_pool, save_npy_chunked
from advprune.models import SmallCNN

from ._common import save_json

IMAGE_SHAPE = (32, 32, 3)
N_CLASSES = 10
MODES_PER_CLASS = 4
MiB = 2**20


def pool_chunks(n, chunk_rows, seed):
    """Labels and uint8 images, block by block: each class has a few coarse
    colour layouts (4x4 blocks of colour, upsampled), each image one of its
    class's layouts plus a brightness shift and pixel noise."""
    rng = np.random.default_rng(seed)
    layouts = rng.uniform(40, 215, (N_CLASSES, MODES_PER_CLASS, 4, 4, 3))
    layouts = layouts.repeat(8, axis=2).repeat(8, axis=3).astype(np.float32)
    for start in range(0, n, chunk_rows):
        k = min(chunk_rows, n - start)
        labels = rng.integers(0, N_CLASSES, k)
        modes = rng.integers(0, MODES_PER_CLASS, k)
        images = rng.standard_normal((k, *IMAGE_SHAPE), dtype=np.float32)
        images *= 24.0
        images += layouts[labels, modes]
        images += rng.normal(0.0, 12.0, (k, 1, 1, 1)).astype(np.float32)
        np.clip(images, 0, 255, out=images)
        yield labels, images.astype(np.uint8)


def write_pool(directory, n, chunk_rows, seed):
    """images.npy and labels.npy in ``directory``, each written atomically."""
    labels = np.empty(n, dtype=np.int64)

    def image_blocks():
        start = 0
        for block_labels, block_images in pool_chunks(n, chunk_rows, seed):
            labels[start : start + len(block_labels)] = block_labels
            start += len(block_labels)
            yield block_images

    save_npy_chunked(
        directory / "images.npy", image_blocks(), shape=(n, *IMAGE_SHAPE), dtype="u1"
    )
    save_npy_chunked(directory / "labels.npy", [labels], shape=(n,), dtype=np.int64)


class RssSampler(threading.Thread):
    """Largest VmRSS, RssAnon and RssFile of this process, sampled every 50 ms."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
        self._done = threading.Event()

    def run(self):
        while not self._done.is_set():
            for key, kib in read_status(tuple(self.peak)).items():
                self.peak[key] = max(self.peak[key], kib)
            self._done.wait(0.05)

    def stop(self):
        self._done.set()
        self.join()
        return {key: round(kib / 1024, 1) for key, kib in self.peak.items()}


def read_status(keys):
    """Fields of /proc/self/status in KiB (empty where there is no /proc)."""
    values = {}
    if not os.path.exists("/proc/self/status"):
        return values
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in keys:
                values[key] = int(rest.split()[0])
    return values


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="pool size")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "advprune_streaming",
        help="where the pool is written",
    )
    parser.add_argument("--subset-size", type=int, default=2000)
    # The scoring run is not what is measured here; two PGD steps keep it short.
    parser.add_argument("--attack-steps", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=65536)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse a pool of size --n in --dir"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the pool files afterwards"
    )
    parser.add_argument(
        "--no-release-pages",
        action="store_true",
        help="let read pages of the memory map stay in the resident set",
    )
    parser.add_argument("--out", type=Path, default=None, help="scores .npy")
    parser.add_argument(
        "--result",
        type=Path,
        default=Path(__file__).parent / "results" / "streaming.json",
    )
    args = parser.parse_args()

    args.dir.mkdir(parents=True, exist_ok=True)
    out = args.out or args.dir / "scores.npy"
    pool_bytes = args.n * (np.prod(IMAGE_SHAPE) + 8)
    reuse = args.reuse and (args.dir / "labels.npy").is_file()
    if reuse:
        reuse = np.load(args.dir / "labels.npy", mmap_mode="r").shape == (args.n,)
    needed = (0 if reuse else pool_bytes) + 8 * args.n
    free = shutil.disk_usage(args.dir).free
    if needed > free:
        sys.exit(
            f"{args.dir} has {free / 2**30:.1f} GiB free; the pool needs "
            f"{needed / 2**30:.1f} GiB. Use --dir elsewhere or a smaller --n."
        )

    timings = {}
    started = time.perf_counter()
    if not reuse:
        write_pool(args.dir, args.n, args.chunk_size, seed=0)
    timings["write_pool"] = time.perf_counter() - started

    X, y = load_pool(args.dir, release_pages=not args.no_release_pages)
    rss_before_fit_mib = read_status(("VmRSS",)).get("VmRSS", 0) / 1024
    pruner = AdversarialPruner(
        prune_ratio=0.5,
        importance="mean_loss",
        extrapolation="knn",
        subset_size=args.subset_size,
        epochs=1,
        attack_steps=args.attack_steps,
        model=SmallCNN(3, N_CLASSES, 32),
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        device=args.device,
        random_state=0,
    )
    sampler = RssSampler()
    sampler.start()
    load_before = os.getloadavg()
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    pruner.fit(X, y)
    timings["fit"] = time.perf_counter() - started
    fit_cpu_seconds = cpu_seconds() - cpu_before
    peak_during_fit = sampler.stop()

    started = time.perf_counter()
    scores = pruner.scores_
    save_npy_chunked(
        out,
        (
            scores[s : s + args.chunk_size]
            for s in range(0, len(scores), args.chunk_size)
        ),
        shape=scores.shape,
        dtype=np.float64,
    )
    timings["write_scores"] = time.perf_counter() - started

    fit = pruner.timings_
    unscored = int((~pruner.scored_mask_).sum())
    result = {
        "command": "python -m benchmarks.streaming " + shlex.join(sys.argv[1:]),
        "n_samples": args.n,
        "n_scored": args.n - unscored,
        "n_extrapolated": unscored,
        "image_shape_stored": list(IMAGE_SHAPE),
        "pool_file_mib": round(args.n * np.prod(IMAGE_SHAPE) / MiB, 1),
        "chunk_size": args.chunk_size,
        "release_pages": not args.no_release_pages,
        "model": "SmallCNN(3, 10, 32), penultimate features (128-d)",
        "scoring_run": {
            "score": "mean_loss",
            "epochs": 1,
            "attack_steps": args.attack_steps,
            "subset_size": args.subset_size,
        },
        "peak_rss_mib": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        ),
        "peak_sampled_during_fit_mib": peak_during_fit,
        "rss_before_fit_mib": round(rss_before_fit_mib, 1),
        "seconds": {
            "write_pool": round(timings["write_pool"], 1),
            "fit_total": round(timings["fit"], 1),
            "fit_scoring": round(fit["scoring"], 1),
            "fit_embedding": round(fit["embedding"], 1),
            "fit_extrapolation": round(fit["extrapolation"], 1),
            "fit_other": round(timings["fit"] - sum(fit.values()), 1),
            "write_scores": round(timings["write_scores"], 2),
            "fit_cpu_user_and_system": round(fit_cpu_seconds, 1),
        },
        "samples_per_second": {
            "embedding": round(args.n / fit["embedding"]),
            "extrapolation": round(args.n / fit["extrapolation"]),
            "embedding_and_extrapolation": round(
                args.n / (fit["embedding"] + fit["extrapolation"])
            ),
        },
        "scores_out": str(out),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            # Other processes share the cores: a load average above the core
            # count and CPU seconds well below cpu_count * wall seconds mean
            # the throughputs above are lower than on an idle machine.
            "load_average_1min_before_and_after_fit": [
                round(load_before[0], 2),
                round(os.getloadavg()[0], 2),
            ],
            "device": args.device,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "advprune": advprune.__version__,
        },
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    save_json(args.result, result)
    print(json.dumps(result, indent=2))
    if not args.keep:
        for name in ("images.npy", "labels.npy"):
            (args.dir / name).unlink()


if __name__ == "__main__":
    main()
