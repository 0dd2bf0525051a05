"""Scaling study: fidelity and robust accuracy as the number of scored samples grows.

On a 20,000-image synthetic digits pool (eps 0.2, PGD-5), score 200 to 5,000
samples with the default strategy and with the paper's kNN, measure the Spearman
correlation of each with dynamic uncertainty computed directly on the whole pool
(on the samples the strategy did not score), and adversarially train on the real
training digits plus the pool pruned by 50 % and by 70 % (lowest rule), as in
``benchmarks/reproduce.py``; the direct reference and random pruning are trained
at both ratios beside them::

    python -m benchmarks.scaling --jobs 2

Writes ``benchmarks/results/scaling/scaling.json``; ``python -m
benchmarks.reproduce --report`` puts it on the results page.
"""

import argparse
import dataclasses
import shlex
import sys

import numpy as np
from joblib import Parallel, delayed

from advprune import AdversarialClassifier, AdversarialPruner
from advprune.datasets import load_digits_pool
from advprune.metrics import robust_accuracy, spearman_score
from advprune.selection import select

from ._common import RESULTS, environment, save_json, save_npz
from .reproduce import CONFIGS, METHODS, _limit_threads, random_scores

OUT = RESULTS / "scaling"
# Score vectors are cached here between runs, and not kept in the repository.
CACHE = OUT / "scores"
SIZES = (200, 500, 1000, 2000, 5000)
TRAINED_SIZES = (200, 1000, 5000)
RATIOS = (0.5, 0.7)
STRATEGIES = ("confidence", "knn")


def scores_of(config, data, seed, method, n_scored):
    """One strategy's score vector of the pool, cached on disk."""
    path = CACHE / f"seed{seed}_{method}_{n_scored}.npz"
    if path.exists():
        with np.load(path) as saved:
            return saved["scores"], saved["scored"]
    _limit_threads(config)
    pruner = AdversarialPruner(
        prune_ratio=0.0,
        subset_size=1.0 if method == "direct" else n_scored,
        eps=config.eps,
        attack_steps=config.attack_steps,
        device="cpu",
        random_state=seed,
        **{k: v for k, v in METHODS[method].items() if k != "subset_size"},
    ).fit(data.X_pool, data.y_pool)
    save_npz(path, {"scores": pruner.scores_, "scored": pruner.scored_mask_})
    return pruner.scores_, pruner.scored_mask_


def train(config, data, seed, method, n_scored, ratio):
    """Robust accuracy after training on real + the pool pruned by ``ratio``."""
    _limit_threads(config)
    if method == "none":
        kept = np.ones(len(data.y_pool), dtype=bool)
    elif method == "random":
        kept = select(random_scores(seed, len(data.y_pool)), ratio)
    else:
        kept = select(scores_of(config, data, seed, method, n_scored)[0], ratio)
    clf = AdversarialClassifier(
        eps=config.eps,
        attack_steps=config.attack_steps,
        epochs=config.final_epochs,
        lr=config.final_lr,
        device="cpu",
        random_state=seed,
    ).fit(
        np.concatenate([data.X_train, data.X_pool[kept]]),
        np.concatenate([data.y_train, data.y_pool[kept]]),
    )
    robust = robust_accuracy(
        clf,
        data.X_test,
        data.y_test,
        steps=config.eval_steps,
        restarts=config.eval_restarts,
        random_state=seed,
    )
    return {
        "seed": seed,
        "method": method,
        "n_scored": n_scored,
        "prune_ratio": ratio,
        "robust_accuracy": robust,
        "clean_accuracy": float(clf.score(data.X_test, data.y_test)),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-pool", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument(
        "--trained-sizes", type=int, nargs="+", default=list(TRAINED_SIZES)
    )
    parser.add_argument("--ratios", type=float, nargs="+", default=list(RATIOS))
    parser.add_argument("--final-epochs", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args(argv)
    config = CONFIGS["digits"]
    if args.final_epochs is not None:
        config = dataclasses.replace(config, final_epochs=args.final_epochs)
    data = load_digits_pool(args.n_pool, random_state=config.data_seed)
    # The direct references first, one per seed, then every strategy and size.
    Parallel(n_jobs=args.jobs)(
        delayed(scores_of)(config, data, seed, "direct", args.n_pool)
        for seed in args.seeds
    )
    jobs = [
        (seed, method, size)
        for seed in args.seeds
        for method in STRATEGIES
        for size in args.sizes
    ]
    Parallel(n_jobs=args.jobs)(delayed(scores_of)(config, data, *job) for job in jobs)
    fidelity = []
    for seed, method, size in jobs:
        direct = scores_of(config, data, seed, "direct", args.n_pool)[0]
        scores, scored = scores_of(config, data, seed, method, size)
        fidelity.append(
            {
                "seed": seed,
                "method": method,
                "n_scored": size,
                "spearman_unscored": spearman_score(direct[~scored], scores[~scored]),
            }
        )
        rho = fidelity[-1]["spearman_unscored"]
        print(f"seed {seed} {method:<10} {size:>5} scored: {rho:.3f}", flush=True)
    trainings = [(seed, "none", 0, 0.0) for seed in args.seeds] + [
        (seed, method, size, ratio)
        for seed in args.seeds
        for ratio in args.ratios
        for method, sizes in (
            ("random", (0,)),
            ("direct", (args.n_pool,)),
            *((m, args.trained_sizes) for m in STRATEGIES),
        )
        for size in sizes
    ]
    downstream = Parallel(n_jobs=args.jobs)(
        delayed(train)(config, data, *job) for job in trainings
    )
    save_json(
        OUT / "scaling.json",
        {
            "command": "python -m benchmarks.scaling " + shlex.join(sys.argv[1:]),
            "n_pool": args.n_pool,
            "seeds": args.seeds,
            "ratios": args.ratios,
            "fidelity": fidelity,
            "downstream": downstream,
            "environment": environment(),
        },
    )
    for row in downstream:
        print(row, flush=True)


if __name__ == "__main__":
    main()
