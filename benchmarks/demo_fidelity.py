"""Fidelity of the demo's extrapolated scores against directly computed ones.

Reproduces the pool and the scoring settings of ``advprune demo`` (default
arguments, random_state=0), then scores the WHOLE pool directly once (the
expensive reference the method avoids) and reports the Spearman correlation
between extrapolated and direct dynamic uncertainty on the unscored 90%, and
the overlap of the halves each would prune. The subset's own direct scores
come from a different training run (10% of the data) than the reference, so
their agreement with it is reported too.

Run::

    python -m benchmarks.demo_fidelity
"""

import argparse
import time

import torch
from scipy.stats import spearmanr
from sklearn.utils import check_random_state

from advprune import AdversarialPruner
from advprune.datasets import load_digits_pool
from advprune.selection import select_lowest

from ._common import RESULTS, save_json


def main():
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(1)
    rng = check_random_state(0)  # the demo's seed derivation
    data_seed, pruner_seed = (int(s) for s in rng.randint(2**31 - 1, size=4)[:2])
    data = load_digits_pool(2000, random_state=data_seed)
    X, y = data.X_pool, data.y_pool
    settings = dict(
        importance="dynamic_uncertainty",
        importance_params={"window": 10},
        epochs=15,
        eps=0.2,
        attack_steps=5,
        device="cpu",
        random_state=pruner_seed,
    )
    timings = {}
    started = time.perf_counter()
    extrapolated = AdversarialPruner(subset_size=0.1, **settings).fit(X, y)
    timings["subset_pipeline_s"] = time.perf_counter() - started
    started = time.perf_counter()
    direct = AdversarialPruner(subset_size=1.0, **settings).fit(X, y)
    timings["direct_whole_pool_s"] = time.perf_counter() - started

    unscored = ~extrapolated.scored_mask_
    rho_unscored = spearmanr(extrapolated.scores_[unscored], direct.scores_[unscored])[
        0
    ]
    rho_subset = spearmanr(extrapolated.scores_[~unscored], direct.scores_[~unscored])[
        0
    ]
    rho_all = spearmanr(extrapolated.scores_, direct.scores_)[0]
    pruned_a = ~select_lowest(extrapolated.scores_, 0.5)
    pruned_b = ~select_lowest(direct.scores_, 0.5)
    overlap = (pruned_a & pruned_b).sum() / pruned_b.sum()
    result = {
        "spearman_extrapolated_vs_direct_unscored": rho_unscored,
        "spearman_subset_run_vs_full_run_on_subset": rho_subset,
        "spearman_all": rho_all,
        "pruned_half_overlap": overlap,
        **timings,
    }
    for key, value in result.items():
        print(f"{key:<45}{value:8.3f}")
    save_json(RESULTS / "demo_fidelity.json", result)


if __name__ == "__main__":
    main()
