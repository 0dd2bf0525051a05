"""Choose the attack budget of ``advprune demo``: clean and robust accuracy vs eps.

Trains the demo's final model (default small CNN, PGD adversarial training) on
the real training digits plus the full 2,000-sample synthetic pool, for several
eps, and evaluates it on the real test digits with the demo's evaluation
(PGD-20, cross-entropy and CW losses, worst case per sample) or a stronger one.

    python -m benchmarks.demo_eps                     # the demo's PGD-5, 8 epochs
    python -m benchmarks.demo_eps --attack-steps 10   # PGD-10 training
    python -m benchmarks.demo_eps --eps 0.2 --eval-steps 100   # stronger attacks
    python -m benchmarks.demo_eps --eps 0.2 --restarts 5
    python -m benchmarks.demo_eps --eps 0.2 --autoattack   # and AutoAttack

Single-threaded, like the demo.
"""

import argparse
import time

import numpy as np
import torch

from advprune import AdversarialClassifier
from advprune.datasets import load_digits_pool
from advprune.metrics import robust_accuracy


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--eps", type=float, nargs="+", default=[0.05, 0.1, 0.15, 0.2, 0.25]
    )
    parser.add_argument("--attack-steps", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--n-synthetic", type=int, default=2000)
    parser.add_argument("--eval-steps", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument(
        "--autoattack",
        action="store_true",
        help="also evaluate under AutoAttack's standard version (needs the extra)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    data = load_digits_pool(args.n_synthetic, random_state=args.random_state)
    X = np.concatenate([data.X_train, data.X_pool])
    y = np.concatenate([data.y_train, data.y_pool])
    print(
        f"PGD-{args.attack_steps} training, {args.epochs} epochs, "
        f"{len(y)} samples; PGD-{args.eval_steps} CE+CW evaluation with "
        f"{args.restarts} start(s) on {len(data.y_test)}"
    )
    header = f"{'eps':>5}  {'clean acc':>9}  {'robust acc':>10}  {'train s':>7}"
    if args.autoattack:
        header += f"  {'AutoAttack':>10}  {'AA s':>6}"
    print(header)
    for eps in args.eps:
        clf = AdversarialClassifier(
            eps=eps,
            attack_steps=args.attack_steps,
            epochs=args.epochs,
            device="cpu",
            random_state=args.random_state,
        )
        started = time.perf_counter()
        clf.fit(X, y)
        seconds = time.perf_counter() - started
        clean = clf.score(data.X_test, data.y_test)
        robust = robust_accuracy(
            clf,
            data.X_test,
            data.y_test,
            steps=args.eval_steps,
            restarts=args.restarts,
            random_state=args.random_state,
        )
        line = f"{eps:5.2f}  {clean:9.3f}  {robust:10.3f}  {seconds:7.1f}"
        if args.autoattack:
            started = time.perf_counter()
            autoattack = robust_accuracy(
                clf,
                data.X_test,
                data.y_test,
                attack="autoattack",
                random_state=args.random_state,
            )
            line += f"  {autoattack:10.3f}  {time.perf_counter() - started:6.0f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
