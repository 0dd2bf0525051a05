"""Cost of recording training dynamics, against training without recording.

PGD-10 adversarial training of the default small CNN on 10,000 8x8 images
(digits from the embedded pool), timed side by side in one process: no
recording, ``record="online"`` and ``record="epoch"``. Each mode trains the same
number of epochs from the same initialisation; the modes are interleaved over
several repetitions and the median seconds per epoch is reported, because this
machine's absolute timings drift.

Run::

    python -m benchmarks.training_overhead            # 10,000 images
    python -m benchmarks.training_overhead --n 2000   # quicker
"""

import argparse
import platform
import statistics
import time

import torch

from advprune.datasets import load_digits_pool
from advprune.models import default_model
from advprune.training import AdversarialTrainer

from ._common import RESULTS, save_json

MODES = {"none": None, "online": "online", "epoch": "epoch"}


def seconds_per_epoch(X, y, record, *, epochs, eps):
    torch.manual_seed(0)
    model = default_model(X.shape[1:], 10)
    trainer = AdversarialTrainer(
        model,
        eps=eps,
        attack_steps=10,
        epochs=epochs,
        batch_size=128,
        lr=0.05,
        device="cpu",
        random_state=0,
    )
    started = time.perf_counter()
    trainer.fit(X, y, record=record)
    return (time.perf_counter() - started) / epochs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="training images")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads"
    )
    parser.add_argument(
        "--out",
        default=RESULTS / "training_overhead.json",
    )
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_digits_pool(n_synthetic=args.n, random_state=0)
    X, y = data.X_pool, data.y_pool
    timings = {mode: [] for mode in MODES}
    for _ in range(args.repeats):
        for mode, record in MODES.items():
            timings[mode].append(
                seconds_per_epoch(X, y, record, epochs=args.epochs, eps=args.eps)
            )
    median = {mode: statistics.median(t) for mode, t in timings.items()}
    print(
        f"PGD-10 AT, SmallCNN, {args.n} images of {X.shape[1:]}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"{'recording':<10}{'s/epoch':>10}{'ratio':>8}")
    for mode, value in median.items():
        print(f"{mode:<10}{value:>10.2f}{value / median['none']:>8.3f}")
    result = {
        "n": args.n,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "seconds_per_epoch": timings,
        "median": median,
        "ratio_to_none": {m: v / median["none"] for m, v in median.items()},
        "machine": platform.platform(),
        "threads": torch.get_num_threads(),
    }
    save_json(args.out, result)


if __name__ == "__main__":
    main()
