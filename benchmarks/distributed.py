"""Wall time of a data-parallel scoring run: one process against two.

A scoring run (PGD-10 adversarial training of the default small CNN with
epoch recording, as ``benchmarks/training_overhead.py`` times it) on digits
from the embedded pool, run by :class:`advprune.training.AdversarialTrainer`
in one process and in two
processes of a torch.distributed job on the CPU (gloo backend, one torch
thread each), with the same data, seed and global batch. The time reported is
the wall time of ``fit`` (the slowest process), without process start-up; the
runs alternate over several repetitions and the median is reported, because
the absolute timings of a shared machine drift.

Run::

    python -m benchmarks.distributed            # 2,000 images, 3 epochs
    python -m benchmarks.distributed --n 4000 --repeats 5

Two processes can only be faster where two cores are free: on a 2-core
machine busy with other work the second process competes with it.
"""

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing

from advprune.datasets import load_digits_pool

from .training_overhead import seconds_per_epoch


def _fit(n, epochs):
    data = load_digits_pool(n, random_state=0)
    X, y = data.X_pool[:n], data.y_pool[:n]
    # The same run as benchmarks/training_overhead.py's epoch recording.
    return epochs * seconds_per_epoch(X, y, "epoch", epochs=epochs, eps=0.2)


def _worker(rank, world_size, init_file, n, epochs, out):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        dist.barrier()
        seconds = _fit(n, epochs)
        with open(f"{out}.{rank}", "w") as f:
            f.write(repr(seconds))
    finally:
        dist.destroy_process_group()


def _timed(world_size, n, epochs):
    """Seconds of the slowest process's fit in a job of ``world_size``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "seconds")
        torch.multiprocessing.spawn(
            _worker,
            args=(world_size, os.path.join(tmp, "init"), n, epochs, out),
            nprocs=world_size,
        )
        return max(
            float(Path(f"{out}.{rank}").read_text()) for rank in range(world_size)
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="training images")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(__file__), "results", "distributed.json"),
        help="JSON file for the timings",
    )
    args = parser.parse_args()

    runs = {1: [], 2: []}
    for _ in range(args.repeats):
        for world_size in runs:
            runs[world_size].append(_timed(world_size, args.n, args.epochs))
    median = {k: statistics.median(v) for k, v in runs.items()}
    print(
        f"PGD-10 AT with epoch recording, SmallCNN, {args.n} images of (1, 8, 8), "
        f"{args.epochs} epochs, torch {torch.__version__}, gloo, 1 thread/process, "
        f"{os.cpu_count()} cores"
    )
    print(f"{'processes':>9}  {'fit s':>7}  {'speed-up':>8}  runs")
    for world_size, seconds in median.items():
        print(
            f"{world_size:>9}  {seconds:7.1f}  {median[1] / seconds:8.2f}  "
            + " / ".join(f"{s:.1f}" for s in runs[world_size])
        )
    with open(args.out, "w") as f:
        json.dump(
            {
                "n": args.n,
                "epochs": args.epochs,
                "torch": torch.__version__,
                "machine": platform.platform(),
                "cores": os.cpu_count(),
                "seconds": {str(k): v for k, v in runs.items()},
                "median_seconds": {str(k): v for k, v in median.items()},
            },
            f,
            indent=2,
        )
        f.write("\n")


if __name__ == "__main__":
    main()
