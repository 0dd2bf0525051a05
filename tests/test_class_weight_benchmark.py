"""Smoke test of benchmarks/class_weight.py at tiny size, and its report section."""

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from benchmarks import class_weight, reproduce  # noqa: E402
from benchmarks.reproduce_report import class_weight_section  # noqa: E402


def test_class_weight_benchmark_runs_and_reports(tmp_path, capsys):
    class_weight.main(
        [
            "--config",
            "tabular",
            "--seeds",
            "0",
            "--weights",
            "0",
            "0.5",
            "1",
            "--ratios",
            "0.5",
            "--n-pool",
            "300",
            "--final-epochs",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert "class_weight  spearman" in capsys.readouterr().out
    result = json.loads((tmp_path / "tabular.json").read_text())
    assert [r["class_weight"] for r in result["fidelity"]] == [0.0, 0.5, 1.0]
    assert {r["method"] for r in result["downstream"]} == {
        "random",
        "class_weight=0",
        "class_weight=0.5",
        "class_weight=1",
    }
    # The weight the package uses reproduces the default pruner's scores.
    config = reproduce.CONFIGS["tabular"]
    config = type(config)(**{**config.__dict__, "n_pool": 300, "final_epochs": 1})
    data = reproduce.load_data(config)
    pruner = reproduce.make_pruner(config, 0, "confidence").fit(
        data.X_pool, data.y_pool
    )
    with np.load(tmp_path / "tabular" / "scores" / "seed0.npz") as vectors:
        np.testing.assert_allclose(vectors["class_weight=0.5"], pruner.scores_)
        # Full class weight: every class spans the same range of scores.
        full = vectors["class_weight=1"]
    lows = [full[data.y_pool == c].min() for c in np.unique(data.y_pool)]
    assert np.ptp(lows) < 0.05
    section = class_weight_section(tmp_path)
    assert "0.5 (the package's)" in section
    assert "0 of 1 above" in section or "1 of 1 above" in section
