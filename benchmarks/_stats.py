"""Paired statistics of final trainings, shared by the report and the studies.

Plain numpy and scipy: a study can compute its comparisons without the
report's plotting.
"""

from collections import defaultdict

import numpy as np
from scipy import stats

__all__ = ["Table", "interval", "mean_runs", "run_key"]


class Table:
    """Accuracies in percent indexed by (method, rule, ratio) -> {seed: value}."""

    def __init__(self, runs, metric):
        self.values = defaultdict(dict)
        for run in runs:
            key = (run["method"], run["rule"], round(run["prune_ratio"], 4))
            self.values[key][run["seed"]] = 100.0 * run[metric]

    def get(self, method, rule, ratio):
        if method == "none":
            rule, ratio = "lowest", 0.0
        return self.values.get((method, rule, round(ratio, 4)), {})

    def mean_std(self, method, rule, ratio):
        values = np.array(list(self.get(method, rule, ratio).values()))
        if values.size == 0:
            return None
        return values.mean(), values.std(ddof=1) if values.size > 1 else np.nan

    def paired(self, method, rule, ratio, baseline, baseline_rule=None):
        """Per-seed differences method - baseline, on the seeds both have."""
        a = self.get(method, rule, ratio)
        b = self.get(baseline, baseline_rule or rule, ratio)
        return np.array([a[s] - b[s] for s in sorted(set(a) & set(b))])


def interval(differences, level=0.95):
    """Mean and t-interval of paired differences; None with fewer than 2."""
    if len(differences) < 2:
        return None
    mean = differences.mean()
    half = stats.t.ppf(0.5 + level / 2, len(differences) - 1) * stats.sem(differences)
    return mean, mean - half, mean + half


def run_key(run):
    return run["seed"], run["method"], run["rule"], round(run["prune_ratio"], 4)


def mean_runs(trainings):
    """One run per (seed, method, rule, ratio), its robust accuracy the mean
    over the lists, each of which must have trained it exactly once."""
    per_list = [
        {run_key(run): run["robust_accuracy"] for run in runs} for runs in trainings
    ]
    if any(
        len(values) != len(runs)
        for values, runs in zip(per_list, trainings, strict=True)
    ) or any(values.keys() != per_list[0].keys() for values in per_list):
        raise ValueError("every pool must be trained once in every list.")
    fields = ("seed", "method", "rule", "prune_ratio")
    return [
        {
            **dict(zip(fields, key, strict=True)),
            "robust_accuracy": float(np.mean([values[key] for values in per_list])),
        }
        for key in per_list[0]
    ]
