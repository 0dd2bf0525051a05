"""The confirmation-seed section of docs/results.rst, from hand-made JSON."""

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from benchmarks.reproduce_report import CONFIRM_RATIOS, confirmation_section  # noqa: E402


def _write_seed(root, seed, robust):
    """One seed's score summary and final trainings; ``robust`` maps
    (method, rule, ratio) to robust accuracy."""
    method = {
        "spearman_unscored": 0.8,
        "wall_fraction_of_direct": 0.1,
        "cost": {"fraction_of_direct": 0.05},
    }
    scores = root / "tabular" / "scores"
    scores.mkdir(parents=True, exist_ok=True)
    summary = {"seed": seed, "methods": {"confidence": method, "knn": method}}
    (scores / f"seed{seed}.json").write_text(json.dumps(summary))
    runs = root / "tabular" / "runs" / f"seed{seed}"
    runs.mkdir(parents=True, exist_ok=True)
    for (name, rule, ratio), value in robust.items():
        run = {
            "method": name,
            "rule": rule,
            "prune_ratio": ratio,
            "seed": seed,
            "robust_accuracy": value,
        }
        (runs / f"{name}__{rule}__{ratio:.2f}.json").write_text(json.dumps(run))


def _robust(rng):
    cells = {("none", "lowest", 0.0): rng.uniform(0.5, 0.6)}
    for method in ("random", "confidence"):
        for rule in ("lowest", "balanced"):
            for ratio in CONFIRM_RATIOS:
                cells[method, rule, ratio] = rng.uniform(0.5, 0.6)
    return cells


def test_confirmation_pools_both_seed_sets(tmp_path):
    rng = np.random.default_rng(0)
    reported, confirm = tmp_path / "reproduce", tmp_path / "confirm"
    assert confirmation_section(confirm, reported) is None
    robust = {}
    for root, seeds in ((reported, range(10, 15)), (confirm, range(20, 30))):
        for seed in seeds:
            robust[seed] = _robust(rng)
            _write_seed(root, seed, robust[seed])
    section = confirmation_section(confirm, reported)
    key = ("confidence", "lowest", 0.7)
    base = ("random", "lowest", 0.7)
    d = np.array([100 * (r[key] - r[base]) for r in robust.values()])
    first, second = d[:5], d[5:]
    row = section.split("* - vs random, lowest removed, 70%\n")[1].splitlines()[:3]
    for cell, values in zip(row, (first, second, d), strict=True):
        assert cell.strip().startswith(f"- {values.mean():+.1f} [")
        assert cell.endswith(f"{int((values > 0).sum())} of {len(values)} above")
    assert "seeds 10-14" in section and "seeds 20-29" in section
    # The answers are taken over all fifteen seeds.
    assert f"{d.mean():+.1f} points" in section.split("over all fifteen seeds:")[1]
