"""Cost of a grid search over the prune ratio, with the scoring run cached.

GridSearchCV (cv=3) over ``adversarialpruner__prune_ratio`` of
``make_pipeline(AdversarialPruner(memory=...), ..., final)``, once with one
ratio and once with four, each with a fresh cache, side by side in one process.
Scores do not depend on the ratio, so with ``memory`` set the four-ratio grid
trains the scoring model once per fold, like the one-ratio grid. Two final
steps are timed: a cheap one (logistic regression on the flattened pixels),
which isolates the pruning step, and ``AdversarialClassifier``, whose own
training grows with the number of candidates whatever the cache does.

Run::

    python -m benchmarks.grid_search_cost
"""

import argparse
import tempfile
import time

import torch
from joblib import Memory
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import FunctionTransformer

from advprune import AdversarialClassifier, AdversarialPruner, make_pipeline
from advprune.datasets import load_digits_pool

from ._common import RESULTS, save_json


def flatten(X):
    return X.reshape(len(X), -1)


def grid_seconds(X, y, ratios, final, cache_dir, args):
    pruner = AdversarialPruner(
        subset_size=args.subset_size,
        epochs=args.epochs,
        eps=args.eps,
        attack_steps=args.attack_steps,
        memory=Memory(cache_dir, verbose=0),
        device="cpu",
        random_state=0,
    )
    pipe = (
        make_pipeline(pruner, FunctionTransformer(flatten), final)
        if isinstance(final, LogisticRegression)
        else make_pipeline(pruner, final)
    )
    search = GridSearchCV(pipe, {"adversarialpruner__prune_ratio": ratios}, cv=3)
    started = time.perf_counter()
    search.fit(X, y)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="pool samples")
    parser.add_argument("--subset-size", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--attack-steps", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads"
    )
    parser.add_argument(
        "--out",
        default=RESULTS / "grid_search_cost.json",
    )
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_digits_pool(n_synthetic=args.n, random_state=0)
    X, y = data.X_pool, data.y_pool
    finals = {
        "logistic regression": lambda: LogisticRegression(max_iter=200),
        "AdversarialClassifier": lambda: AdversarialClassifier(
            epochs=3,
            eps=args.eps,
            attack_steps=args.attack_steps,
            device="cpu",
            random_state=0,
        ),
    }
    one, four = [0.5], [0.3, 0.5, 0.7, 0.9]
    result = {"n": args.n, "cv": 3, "one_ratio": one, "four_ratios": four}
    print(f"GridSearchCV(cv=3) on {args.n} pool images, scoring run cached")
    print(f"{'final step':<24}{'1 ratio s':>11}{'4 ratios s':>12}{'ratio':>8}")
    for name, final in finals.items():
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            t1 = grid_seconds(X, y, one, final(), a, args)
            t4 = grid_seconds(X, y, four, final(), b, args)
        result[name] = {"one_ratio_s": t1, "four_ratios_s": t4, "ratio": t4 / t1}
        print(f"{name:<24}{t1:>11.1f}{t4:>12.1f}{t4 / t1:>8.2f}")
    save_json(args.out, result)


if __name__ == "__main__":
    main()
