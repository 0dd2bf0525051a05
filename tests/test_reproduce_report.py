"""Sections of docs/results.rst generated from hand-made JSON."""

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from benchmarks.reproduce_report import (  # noqa: E402
    COMPARED,
    CONFIRM_RATIOS,
    LABELS,
    RETRAIN_RATIOS,
    RULE_LABELS,
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
    retrained = {("none", "lowest", 0.0)} | {
        (m, rule, q)
        for m in ("random", *COMPARED)
        for rule in ("lowest", "balanced")
        for q in RETRAIN_RATIOS
    }
    repeats = [
        {s: {c: v for c, v in _robust(rng).items() if c in retrained} for s in robust}
        for _ in range(2)
    ]
    for offset, repeat in zip((1000, 2000), repeats, strict=True):
        for seed, cells in repeat.items():
            _write_seed(retrain, seed, cells, 0.8, f"tabular/train{offset}")
    section = retrain_section(retrain, reported, confirm)
    assert "in points, 15 seeds:" in section
    trainings = [robust, *repeats]

    def mean_difference(method, rule, ratio, base):
        return np.mean(
            [_differences(t, method, rule, ratio, base) for t in trainings], axis=0
        )

    rows = [
        (m, rule, q, ("random", rule, q))
        for m in COMPARED
        for rule in ("lowest", "balanced")
        for q in RETRAIN_RATIOS
    ] + [("confidence", rule, 0.5, ("none", "lowest", 0.0)) for rule in RULE_LABELS]
    for m, rule, q, base in rows:
        label = f"{LABELS[m]} vs {LABELS[base[0]]}, {RULE_LABELS[rule]}, {q:.0%}"
        one, three = _cells(section, label, 2)
        _expect(one, _differences(robust, m, rule, q, base))
        _expect(three, mean_difference(m, rule, q, base))
    # Spreads: across seeds of one training, between trainings, of the means.
    spreads = section.split("Where the spread")[1]
    for rule in ("lowest", "balanced"):
        for q in RETRAIN_RATIOS:
            base = ("random", rule, q)
            d = np.array(
                [_differences(t, "confidence", rule, q, base) for t in trainings]
            ).T
            expected = [
                d[:, 0].std(ddof=1),
                np.sqrt(d.var(axis=1, ddof=1).mean()),
                d.mean(axis=1).std(ddof=1),
            ]
            cells = _cells(spreads, f"{RULE_LABELS[rule]}, {q:.0%}", 3)
            assert [float(c.split("- ")[1]) for c in cells] == pytest.approx(
                expected, abs=0.005
            )
    d = mean_difference("confidence", "lowest", 0.7, ("random", "lowest", 0.7))
    assert f"**Default vs random, lowest removed, 70%:** {d.mean():+.1f} points [" in (
        section
    )
    # A retrained pool missing is an error, not a smaller table.
    next((retrain / "tabular" / "train2000" / "runs").glob("seed2*/knn__*")).unlink()
    with pytest.raises(ValueError, match="1 planned trainings missing in train2000"):
        retrain_section(retrain, reported, confirm)


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

    def mean(method, size, ratio):
        return f"     - {np.mean(list(accuracy(method, size, ratio).values())):.1f}"

    for ratio in ratios:
        table = section.split(f"Robust accuracy at {100 * ratio:.0f} % pruning")[1]
        # Strategies per scored size; the references in the "no subset" column.
        assert _cells(table, "confidence (default)", 3) == [
            "     - ",
            mean("confidence", 200, ratio),
            mean("confidence", 1000, ratio),
        ]
        assert _cells(table, "random", 2) == [mean("random", 0, ratio), "     - "]
        direct = _cells(table, "DU direct (whole pool)", 1)
        assert direct == [mean("direct", 20_000, ratio)]
        assert _cells(table, "no pruning", 1) == [mean("none", 0, 0.0)]
        for method, size, base, where in (
            ("direct", 20_000, "random", ""),
            ("knn", 1000, "random", " at 1,000"),
            ("confidence", 200, "none", " at 200"),
        ):
            reference = accuracy(base, 0, ratio if base == "random" else 0.0)
            d = np.array(
                [v - reference[s] for s, v in accuracy(method, size, ratio).items()]
            )
            head = f"* **{LABELS[method]} vs {LABELS[base]}, {100 * ratio:.0f} % "
            line = section.split(head + "pruned, points:** ")[1].splitlines()[0]
            expected = f"{d.mean():+.1f}{where} ({int((d > 0).sum())} of 3 seeds above)"
            assert line.count(expected) == 1
