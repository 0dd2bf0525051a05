"""The confidence strategy's class weight: fidelity against robust accuracy.

:func:`advprune.extrapolation.confidence_scores` blends each sample's global
rank with its rank within its class (``class_weight``; the package uses 0.5).
More weight is meant to protect the classes the scoring run finds hard from the
lowest rule, and moves the scores away from dynamic uncertainty (DU) computed
directly on the whole pool, which has between-class differences. This benchmark measures
both sides on the seeds the strategy's settings were chosen on (0-7 by default,
never the reported 10-14): for each weight, the Spearman correlation with direct
DU on the unscored rows, and the robust accuracy of the lowest rule against
random pruning of the same size, with the protocol of ``benchmarks/reproduce.py``
(the class-balanced rule keeps the same samples at every weight, so it is not
run)::

    python -m benchmarks.class_weight --config digits --jobs 2
    python -m benchmarks.class_weight --config tabular --jobs 2

Writes ``benchmarks/results/class_weight/<config>.json``; the scoring runs and
the trainings are kept beside it (not in the repository), so a rerun, with
other weights too, skips what exists. ``python -m benchmarks.reproduce
--report`` puts it on the results page.
"""

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from advprune.extrapolation import confidence_scores

from ._common import RESULTS, environment, save_json, save_npz
from .reproduce import (
    CONFIGS,
    _fidelity,
    _limit_threads,
    _offclass_percentile,
    load_data,
    make_pruner,
    random_scores,
    run_path,
    train_and_evaluate,
)

OUT = RESULTS / "class_weight"
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
RATIOS = (0.3, 0.5, 0.7)
SEEDS = tuple(range(8))


def method_name(weight):
    return f"class_weight={weight:g}"


def tracking_run(config, data, seed, directory):
    """The default pruner's tracking of one seed, with direct DU's scores:
    ``adversarial``, ``clean``, ``subset``, ``scored`` and ``direct``, kept in
    ``directory/seed<seed>.npz`` and read from there when it exists."""
    path = directory / f"seed{seed}.npz"
    if not path.exists():
        _limit_threads(config)
        pruner = make_pruner(config, seed, "confidence").fit(data.X_pool, data.y_pool)
        direct = make_pruner(config, seed, "direct").fit(data.X_pool, data.y_pool)
        save_npz(
            path,
            {
                "adversarial": pruner.tracking_.adversarial,
                "clean": pruner.tracking_.clean,
                "subset": pruner.subset_indices_,
                "scored": pruner.scored_mask_,
                "direct": direct.scores_,
            },
        )
    with np.load(path) as run:
        return dict(run)


def score_seed(config, data, seed, weights, out_dir):
    """Every weight's confidence scores of one seed, with the random baseline,
    written where :func:`benchmarks.reproduce.train_and_evaluate` reads them;
    returns each weight's fidelity to direct DU and off-class percentile.

    The scoring runs (the default pruner's tracking and direct DU) are kept in
    ``tracking/seed<seed>.npz``, so that other weights cost no training.
    """
    run = tracking_run(config, data, seed, out_dir / "tracking")
    return weight_scores(run, data, seed, "class_weight", weights, out_dir)


def weight_scores(run, data, seed, parameter, weights, out_dir, check=None):
    """The confidence scores of one scoring run with ``parameter`` of
    :func:`advprune.extrapolation.confidence_scores` set to each weight (named
    ``"<parameter>=<weight>"``), and the random baseline, written to
    ``out_dir/scores/seed<seed>.npz``; returns each weight's fidelity to direct
    DU and off-class percentile. ``check(vectors)`` may refuse them first."""
    names = {weight: f"{parameter}={weight:g}" for weight in weights}
    vectors = {
        names[weight]: confidence_scores(
            run["adversarial"], run["clean"], run["subset"], y=data.y_pool,
            **{parameter: weight},
        )
        for weight in weights
    }  # fmt: skip
    if check is not None:
        check(vectors)
    vectors["random"] = random_scores(seed, len(data.y_pool))
    save_npz(out_dir / "scores" / f"seed{seed}.npz", vectors)
    rows = []
    for weight in weights:
        scores = vectors[names[weight]]
        row = {"seed": seed, parameter: weight}
        row.update(_fidelity(scores, run["scored"], run["direct"]))
        if data.offclass is not None:
            row["offclass_percentile"] = _offclass_percentile(scores, data.offclass)
        rows.append(row)
    return rows


def paired_differences(result, baseline="random"):
    """``{(weight, ratio): per-seed robust accuracy of the weight minus the
    baseline's, in points}``; ``baseline`` is ``"random"`` or a weight."""
    accuracy = {
        (r["method"], r["prune_ratio"], r["seed"]): 100 * r["robust_accuracy"]
        for r in result["downstream"]
    }
    reference = baseline if baseline == "random" else method_name(baseline)
    return {
        (weight, ratio): np.array(
            [
                accuracy[method_name(weight), ratio, seed]
                - accuracy[reference, ratio, seed]
                for seed in result["seeds"]
            ]
        )
        for weight in result["weights"]
        for ratio in result["ratios"]
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=("digits", "tabular"), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--weights", type=float, nargs="+", default=list(WEIGHTS))
    parser.add_argument("--ratios", type=float, nargs="+", default=list(RATIOS))
    parser.add_argument("--n-pool", type=int, default=None)
    parser.add_argument("--final-epochs", type=int, default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args(argv)
    if any(not 0.0 <= w <= 1.0 for w in args.weights):
        parser.error("--weights must lie in [0, 1].")
    changes = {"n_pool": args.n_pool, "final_epochs": args.final_epochs}
    changes = {k: v for k, v in changes.items() if v is not None}
    if changes and args.out is None:
        # Another experiment: never mixed with, or written over, the results
        # the docs show.
        parser.error("--n-pool and --final-epochs need their own --out.")
    config = dataclasses.replace(CONFIGS[args.config], **changes)
    out_dir = Path(args.out or OUT) / config.name
    data = load_data(config)
    fidelity = Parallel(n_jobs=args.jobs)(
        delayed(score_seed)(config, data, seed, args.weights, out_dir)
        for seed in args.seeds
    )
    methods = ["random", *map(method_name, args.weights)]
    plan = [
        (seed, method, "lowest", ratio)
        for seed in args.seeds
        for method in methods
        for ratio in args.ratios
        if not run_path(out_dir, seed, method, "lowest", ratio).exists()
    ]
    Parallel(n_jobs=args.jobs)(
        delayed(train_and_evaluate)(config, data, *job, out_dir) for job in plan
    )
    result = {
        "command": "python -m benchmarks.class_weight " + shlex.join(sys.argv[1:]),
        "config": config.name,
        "seeds": args.seeds,
        "weights": args.weights,
        "ratios": args.ratios,
        "fidelity": [row for rows in fidelity for row in rows],
        "downstream": [
            json.loads(run_path(out_dir, seed, method, "lowest", ratio).read_text())
            for seed in args.seeds
            for method in methods
            for ratio in args.ratios
        ],
        "environment": environment(),
    }
    save_json(out_dir.parent / f"{config.name}.json", result)
    differences = paired_differences(result)
    print(
        "class_weight  spearman  "
        + "  ".join(f"vs random {q:.0%}" for q in args.ratios)
    )
    for weight in args.weights:
        rho = np.mean(
            [
                r["spearman_unscored"]
                for r in result["fidelity"]
                if r["class_weight"] == weight
            ]
        )
        cells = (f"{differences[weight, q].mean():+15.2f}" for q in args.ratios)
        print(f"{weight:12g}  {rho:8.3f}  " + "  ".join(cells))


if __name__ == "__main__":
    main()
