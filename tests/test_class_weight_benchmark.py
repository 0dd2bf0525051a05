"""Smoke test of benchmarks/class_weight.py at tiny size, and its report section."""

import dataclasses
import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from benchmarks import class_weight, reproduce  # noqa: E402
from benchmarks.reproduce_report import class_weight_section  # noqa: E402

TINY = ["--config", "tabular", "--ratios", "0.5", "--n-pool", "300"]


def test_class_weight_benchmark_runs_and_reports(tmp_path, capsys):
    out = ["--final-epochs", "1", "--out", str(tmp_path)]
    class_weight.main([*TINY, "--seeds", "0", "1", "--weights", "0", "1", *out])
    # Another weight later reuses the scoring runs and the trainings.
    runs = sorted((tmp_path / "tabular" / "runs").rglob("*.json"))
    class_weight.main([*TINY, "--seeds", "0", "1", "--weights", "0", "0.5", "1", *out])
    assert "class_weight  spearman" in capsys.readouterr().out
    again = sorted((tmp_path / "tabular" / "runs").rglob("*.json"))
    assert set(runs) < set(again) and len(again) == len(runs) + 2
    result = json.loads((tmp_path / "tabular.json").read_text())
    assert [r["class_weight"] for r in result["fidelity"]] == [0.0, 0.5, 1.0] * 2
    # The weight the package uses reproduces the default pruner's scores.
    config = dataclasses.replace(
        reproduce.CONFIGS["tabular"], n_pool=300, final_epochs=1
    )
    data = reproduce.load_data(config)
    pruner = reproduce.make_pruner(config, 1, "confidence").fit(
        data.X_pool, data.y_pool
    )
    with np.load(tmp_path / "tabular" / "scores" / "seed1.npz") as vectors:
        np.testing.assert_allclose(vectors["class_weight=0.5"], pruner.scores_)
        # Full class weight: every class spans the same range of scores.
        full = vectors["class_weight=1"]
    lows = [full[data.y_pool == c].min() for c in np.unique(data.y_pool)]
    assert np.ptp(lows) < 0.05
    # The page's cells are the paired differences of the trainings.
    accuracy = {
        (r["method"], r["seed"]): 100 * r["robust_accuracy"]
        for r in result["downstream"]
    }
    d = [
        accuracy["class_weight=1", s] - accuracy["class_weight=0.5", s] for s in (0, 1)
    ]
    section = class_weight_section(tmp_path)
    assert "0.5 (the package's)" in section
    row = section.split("   * - 1\n")[-1].split("\n")[0]
    assert row.strip().startswith(f"- {np.mean(d):+.1f} [")


def test_other_experiments_need_their_own_out():
    with pytest.raises(SystemExit):
        class_weight.main([*TINY, "--seeds", "0"])
