"""Sections of docs/results.rst generated from hand-made JSON."""

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from benchmarks.reproduce_report import (  # noqa: E402
    COMPARED,
    CONFIRM_RATIOS,
    LABELS,
    confirmation_section,
    retrain_section,
    scaling_section,
)


def _write_seed(root, seed, robust, spearman, config_dir="tabular"):
    """One seed's score summary and final trainings under ``root /
    config_dir``; ``robust`` maps (method, rule, ratio) to robust accuracy."""
    scores = root / config_dir / "scores"
    scores.mkdir(parents=True, exist_ok=True)
    method = {
        "spearman_unscored": spearman,
        "wall_fraction_of_direct": 0.1,
        "cost": {"fraction_of_direct": 0.05},
    }
    summary = {"seed": seed, "methods": {"confidence": method, "knn": method}}
    (scores / f"seed{seed}.json").write_text(json.dumps(summary))
    runs = root / config_dir / "runs" / f"seed{seed}"
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
    for method in ("random", *COMPARED):
        for rule in ("lowest", "balanced"):
            for ratio in CONFIRM_RATIOS:
                cells[method, rule, ratio] = rng.uniform(0.5, 0.6)
    return cells


def _cells(section, label, n):
    return section.split(f"* - {label}\n")[1].splitlines()[:n]


def _expect(cell, values):
    assert cell.strip().startswith(f"- {values.mean():+.1f} [")
    assert cell.endswith(f"{int((values > 0).sum())} of {len(values)} above")


@pytest.fixture
def roots(tmp_path):
    rng = np.random.default_rng(0)
    reported, confirm = tmp_path / "reproduce", tmp_path / "confirm"
    robust, spearman = {}, {}
    for root, seeds in ((reported, range(10, 15)), (confirm, range(20, 30))):
        for seed in seeds:
            robust[seed], spearman[seed] = _robust(rng), rng.uniform(0.5, 0.9)
            _write_seed(root, seed, robust[seed], spearman[seed])
    return reported, confirm, robust, spearman


def _differences(robust, method, rule, ratio, base):
    return np.array([100 * (r[method, rule, ratio] - r[base]) for r in robust.values()])


def test_confirmation_pools_both_seed_sets(roots):
    reported, confirm, robust, spearman = roots
    section = confirmation_section(confirm, reported)
    d = _differences(robust, "confidence", "lowest", 0.7, ("random", "lowest", 0.7))
    row = _cells(section, "vs random, lowest removed, 70%", 3)
    for cell, values in zip(row, (d[:5], d[5:], d), strict=True):
        _expect(cell, values)
    # Against no pruning, on the same three views.
    n = _differences(robust, "confidence", "balanced", 0.5, ("none", "lowest", 0.0))
    row = _cells(section, "vs no pruning, lowest removed per class, 50%", 3)
    for cell, values in zip(row, (n[:5], n[5:], n), strict=True):
        _expect(cell, values)
    assert "seeds 10-14" in section and "seeds 20-29" in section
    # The default, the paper's kNN and direct DU over all fifteen seeds.
    row = _cells(section, "lowest removed per class, 30%", 3)
    for cell, method in zip(row, COMPARED, strict=True):
        base = ("random", "balanced", 0.3)
        _expect(cell, _differences(robust, method, "balanced", 0.3, base))
    # Per class minus lowest, for the same method's scores.
    row = _cells(section, "70%", 3)
    for cell, method in zip(row, COMPARED, strict=True):
        base = (method, "lowest", 0.7)
        _expect(cell, _differences(robust, method, "balanced", 0.7, base))
    # The answers are taken over all fifteen seeds, fidelity included.
    verdict = section.split("The answers, over all 15 seeds:")[1]
    ci = f"{d.mean():+.1f} points ["
    assert f"**Default vs random, lowest removed, 70%:** {ci}" in verdict
    assert f"positive in {int((d > 0).sum())} of 15 seeds" in verdict
    values = ", ".join(f"{spearman[s]:.2f}" for s in sorted(spearman))
    assert f"(seeds {values})" in verdict


def test_confirmation_needs_new_seeds(roots):
    reported, confirm, robust, spearman = roots
    assert confirmation_section(confirm / "absent", reported) is None
    _write_seed(confirm, 12, robust[12], spearman[12])
    with pytest.raises(ValueError, match=r"seeds \[12\]"):
        confirmation_section(confirm, reported)


def test_retrain_section_reads_pools_on_the_mean_of_trainings(roots, tmp_path):
    reported, confirm, robust, spearman = roots
    retrain = tmp_path / "retrain"
    assert retrain_section(retrain, reported, confirm) is None
    rng = np.random.default_rng(2)
    repeats = [{s: _robust(rng) for s in robust} for _ in range(2)]
    for offset, repeat in zip((1000, 2000), repeats, strict=True):
        for seed, cells in repeat.items():
            _write_seed(retrain, seed, cells, 0.8, f"tabular/train{offset}")
    section = retrain_section(retrain, reported, confirm)
    trainings = [robust, *repeats]

    def mean_difference(method, rule, ratio, base):
        return np.mean(
            [_differences(t, method, rule, ratio, base) for t in trainings], axis=0
        )

    base = ("random", "lowest", 0.7)
    d = mean_difference("confidence", "lowest", 0.7, base)
    one, three = _cells(
        section, "confidence (default) vs random, lowest removed, 70%", 2
    )
    _expect(one, _differences(robust, "confidence", "lowest", 0.7, base))
    _expect(three, d)
    none = ("none", "lowest", 0.0)
    _, three = _cells(
        section, "confidence (default) vs no pruning, lowest removed per class, 50%", 2
    )
    _expect(three, mean_difference("confidence", "balanced", 0.5, none))
    # Spreads: across seeds of one training, between trainings, of the means.
    per_training = np.array(
        [_differences(t, "confidence", "lowest", 0.7, base) for t in trainings]
    ).T
    expected = [
        per_training[:, 0].std(ddof=1),
        np.sqrt(per_training.var(axis=1, ddof=1).mean()),
        d.std(ddof=1),
    ]
    cells = _cells(section.split("Where the spread")[1], "lowest removed, 70%", 3)
    assert [float(c.split("- ")[1]) for c in cells] == pytest.approx(
        expected, abs=0.005
    )
    assert f"**Default vs random, lowest removed, 70%:** {d.mean():+.1f} points [" in (
        section
    )


def test_scaling_section_reports_every_ratio(tmp_path):
    rng = np.random.default_rng(1)
    seeds, sizes, ratios = (10, 11, 12), (200, 1000), (0.5, 0.7)
    fidelity = [
        {"seed": s, "method": m, "n_scored": n, "spearman_unscored": rng.uniform()}
        for s in seeds
        for m in ("confidence", "knn")
        for n in sizes
    ]
    cells = [(s, "none", 0, 0.0) for s in seeds] + [
        (s, m, n, q)
        for s in seeds
        for q in ratios
        for m, columns in (
            ("random", (0,)),
            ("direct", (20_000,)),
            ("confidence", sizes),
            ("knn", sizes),
        )
        for n in columns
    ]
    downstream = [
        {
            "seed": s,
            "method": m,
            "n_scored": n,
            "prune_ratio": q,
            "robust_accuracy": rng.uniform(0.5, 0.8),
        }
        for s, m, n, q in cells
    ]
    result = {
        "command": "python -m benchmarks.scaling",
        "n_pool": 20_000,
        "seeds": list(seeds),
        "ratios": list(ratios),
        "fidelity": fidelity,
        "downstream": downstream,
    }
    (tmp_path / "scaling.json").write_text(json.dumps(result))
    section = scaling_section(tmp_path, tmp_path, tmp_path)
    assert (tmp_path / "scaling.png").exists()

    def accuracy(method, size, ratio):
        return {
            r["seed"]: 100 * r["robust_accuracy"]
            for r in downstream
            if (r["method"], r["n_scored"], r["prune_ratio"]) == (method, size, ratio)
        }

    table_70 = section.split("Robust accuracy at 70 % pruning")[1]
    default_70 = _cells(table_70, "confidence (default)", 2)
    expected = np.mean(list(accuracy("confidence", 200, 0.7).values()))
    assert default_70 == [f"     - {expected:.1f}", default_70[1]]
    none = np.mean(list(accuracy("none", 0, 0.0).values()))
    assert _cells(table_70, "no pruning", 1) == [f"     - {none:.1f}"]
    random = accuracy("random", 0, 0.7)
    for method, size, where in (("direct", 20_000, ""), ("knn", 1000, " at 1,000")):
        d = np.array([v - random[s] for s, v in accuracy(method, size, 0.7).items()])
        line = section.split(f"* **{LABELS[method]} vs random, 70 % pruned, points:** ")
        assert (
            line[1]
            .splitlines()[0]
            .count(f"{d.mean():+.1f}{where} ({int((d > 0).sum())} of 3 seeds above)")
            == 1
        )
