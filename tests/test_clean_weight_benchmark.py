"""Smoke test of benchmarks/clean_weight.py at tiny size, and its report section."""

import dataclasses
import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from benchmarks import clean_weight, reproduce  # noqa: E402
from benchmarks.reproduce_report import clean_weight_section  # noqa: E402

TINY = ["--config", "tabular", "--n-pool", "300", "--final-epochs", "1"]


def test_clean_weight_benchmark_runs_and_reports(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(clean_weight, "OFFSETS", (0, 1000))  # two trainings, for time
    argv = [*TINY, "--seeds", "0", "1", "--refit", "--out", str(tmp_path)]
    clean_weight.main(argv)
    assert "means of 2 trainings" in capsys.readouterr().out
    result = json.loads((tmp_path / "tabular.json").read_text())
    # Every pool trained once per training seed: no pruning, and random and
    # each weight at 2 ratios x 2 rules, for each of 2 seeds.
    assert [len(runs) for runs in result["downstream"]] == [26, 26]
    seeds = {(r["seed"], r["method"]) for r in result["downstream"][1]}
    assert (1, "clean_weight=1") in seeds and (0, "none") in seeds
    trained = tmp_path / "tabular" / "train1000" / "runs" / "seed1"
    assert (trained / "clean_weight=1__balanced__0.70.json").exists()
    # The scores are the pruner's, with each clean weight: checked by --refit,
    # and here once more for weight 1, which attacks nothing.
    config = dataclasses.replace(
        reproduce.CONFIGS["tabular"], n_pool=300, final_epochs=1
    )
    data = reproduce.load_data(config)
    pruner = reproduce.make_pruner(config, 1, "confidence")
    pruner.set_params(importance_params={"clean_weight": 1.0})
    with np.load(tmp_path / "tabular" / "scores" / "seed1.npz") as vectors:
        np.testing.assert_allclose(
            vectors["clean_weight=1"], pruner.fit(data.X_pool, data.y_pool).scores_
        )
    assert pruner.tracking_.adversarial is None
    costs = result["costs"]["1"]
    assert costs["1"]["cost"]["tracking"] == 300 * 5
    assert costs["0.25"]["cost"]["tracking"] == 300 * 5 + 300 * (3 * 5 + 1)
    # The page's cells are the paired differences of the means of the trainings.
    accuracy = {}
    for runs in result["downstream"]:
        for r in runs:
            key = r["method"], r["rule"], r["prune_ratio"], r["seed"]
            accuracy.setdefault(key, []).append(100 * r["robust_accuracy"])
    d = [
        np.mean(accuracy["clean_weight=1", "lowest", 0.7, s])
        - np.mean(accuracy["clean_weight=0.25", "lowest", 0.7, s])
        for s in (0, 1)
    ]
    rows = clean_weight.comparisons(result)
    (cell,) = [r[4] for r in rows if r[:4] == (1.0, "clean_weight=0.25", "lowest", 0.7)]
    np.testing.assert_allclose(cell, d)
    section = clean_weight_section(tmp_path)
    assert "0.25 (the package's)" in section
    assert "Clean weight, ``tabular``, selection seeds" in section
    assert f"{np.mean(d):+.1f} [" in section
    assert "fit seconds / weight 0.25's" in section
    # The declared rule, computed from the same cells.
    four = [r[4].mean() for r in rows if r[:2] == (1.0, "clean_weight=0.25")]
    assert len(four) == 4
    assert f"mean over the 4 cells {np.mean(four):+.2f} points" in section


def test_reported_seeds_reuse_the_reproduce_trainings(tmp_path):
    path = clean_weight.training_path
    old = path(tmp_path, "digits", 12, "clean_weight=0.25", "lowest", 0.7, 0, True)
    assert old == reproduce.run_path(
        reproduce.DEFAULT_OUT / "digits", 12, "confidence", "lowest", 0.7
    )
    repeat = path(tmp_path, "digits", 21, "random", "balanced", 0.5, 1000, True)
    assert repeat == reproduce.run_path(
        clean_weight.RETRAIN_OUT / "digits" / "train1000", 21, "random", "balanced", 0.5
    )
    confirm = path(tmp_path, "digits", 21, "none", "lowest", 0.0, 0, True)
    assert "confirm" in confirm.parts
    unpruned = path(tmp_path, "digits", 12, "none", "lowest", 0.0, 2000, True)
    assert unpruned == reproduce.run_path(
        clean_weight.RETRAIN_OUT / "digits" / "train2000", 12, "none", "lowest", 0.0
    )
    # Every training --reported reuses exists in the repository.
    jobs = clean_weight.plan(clean_weight.REPORTED, [0.25, 1.0], clean_weight.RATIOS)
    reused = [path(tmp_path, "digits", *job, True) for job in jobs]
    reused = [p for p in reused if not p.is_relative_to(tmp_path)]
    assert len(reused) == 15 * 3 * 9 and all(p.exists() for p in reused)
    new = path(tmp_path, "digits", 21, "clean_weight=1", "lowest", 0.7, 0, True)
    assert new.is_relative_to(tmp_path / "train0")


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "tabular", "--seeds", "0", "1"],
        ["--config", "tabular", "--seeds", "0", "--out", "x"],
        ["--config", "tabular", "--reported", "--out", "x"],
        ["--config", "tabular", "--weights", "0.5", "1", "--out", "x"],
        ["--config", "tabular", "--weights", "0.25", "1.5"],
        # The trainings --reported reuses must all exist (here: none do).
        ["--config", "tabular", "--reported"],
    ],
)
def test_bad_arguments_are_refused_before_any_work(argv, monkeypatch, tmp_path):
    def no_work(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr(clean_weight, "load_data", no_work)
    monkeypatch.setattr(clean_weight, "RETRAIN_OUT", tmp_path)
    with pytest.raises(SystemExit):
        clean_weight.main(argv)


def _study(deltas, spearman):
    """A hand-made study: robust accuracy 0.6 for every pool, plus per weight
    and (rule, ratio) cell a shift in points, plus a per-seed wobble."""
    runs = []
    for seed, wobble in enumerate((-0.1, 0.0, 0.1)):
        runs.append(
            {"seed": seed, "method": "none", "rule": "lowest", "prune_ratio": 0.0,
             "robust_accuracy": 0.6}
        )  # fmt: skip
        for method, shift in [("random", {}), *deltas.items()]:
            # The benchmarked weight wobbles once, the others twice, so that
            # their differences from it vary from seed to seed.
            wobbles = 0 if not shift else 1 if method.endswith("0.25") else 2
            for rule in ("lowest", "balanced"):
                for ratio in (0.5, 0.7):
                    points = shift.get((rule, ratio), 0.0) + wobbles * wobble
                    runs.append(
                        {"seed": seed, "method": method, "rule": rule,
                         "prune_ratio": ratio, "robust_accuracy": 0.6 + points / 100}
                    )  # fmt: skip
    weights = [0.0, 0.25, 1.0]
    return {
        "seeds": [0, 1, 2],
        "weights": weights,
        "ratios": [0.5, 0.7],
        "downstream": [runs],
        "fidelity": [
            {"seed": s, "clean_weight": w, "spearman_unscored": spearman[w]}
            for s in range(3)
            for w in weights
        ],
    }


def test_the_declared_rule_is_read_per_weight():
    from benchmarks.reproduce_report import _clean_weight_rule

    cells = [("lowest", 0.5), ("balanced", 0.5), ("lowest", 0.7), ("balanced", 0.7)]
    deltas = {
        "clean_weight=0.25": {cell: 1.0 for cell in cells},
        # Weight 1: 0.15 below on the mean and never beyond the spread: met.
        "clean_weight=1": {cell: 0.85 for cell in cells},
        # Weight 0: above on the mean, but one cell 0.5 below for every seed.
        "clean_weight=0": dict(zip(cells, (1.5, 1.5, 0.5, 1.5), strict=True)),
    }
    study = _study(deltas, {0.0: 0.8, 0.25: 0.8, 1.0: 0.8})
    line, passed = _clean_weight_rule(study, 1.0)
    assert passed and "mean over the 4 cells -0.15 points" in line
    line, passed = _clean_weight_rule(study, 0.0)
    assert not passed and "+0.25 points (above 0: yes)" in line
    assert "lowest removed, 70% (-0.50 [" in line
    # The same weight 1 with its fidelity under 0.75 misses.
    study = _study(deltas, {0.0: 0.8, 0.25: 0.8, 1.0: 0.7})
    assert not _clean_weight_rule(study, 1.0)[1]
    with pytest.raises(ValueError, match="no rule was declared"):
        _clean_weight_rule({**study, "weights": [0.25, 0.5]}, 0.5)
