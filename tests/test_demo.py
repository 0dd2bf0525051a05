"""``advprune.demo.run_demo`` on tiny settings, and its table and plot."""

import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from advprune.demo import _plot, format_table, run_demo

TINY = {
    "n_synthetic": 120,
    "prune_ratio": 0.75,
    "subset_size": 0.25,
    "eps": 0.2,
    "epochs": 1,
    "attack_steps": 1,
    "scoring_epochs": 3,
    "window": 2,
    "eval_steps": 2,
    "random_state": 5,
}
METHODS = [
    "real + pruned (default)",
    "real + pruned (paper)",
    "real + random pool",
    "real + full pool",
]
HEADER = "method                   n train  clean acc  robust acc  train s  scoring s"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Two runs with the same seed: the first verbose, the second quiet."""
    first = tmp_path_factory.mktemp("demo")
    second = tmp_path_factory.mktemp("again")
    capture = pytest.MonkeyPatch()
    lines = []
    capture.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(a)))
    threads = torch.get_num_threads()
    try:
        results = run_demo(**TINY, output_dir=first, verbose=True)
    finally:
        capture.undo()
    assert torch.get_num_threads() == threads
    again = run_demo(**TINY, output_dir=second, verbose=False)
    return results, again, first, "\n".join(lines)


def test_results_describe_the_four_training_sets(demo):
    results, _, _, _ = demo
    assert set(results) == {
        "settings",
        "data",
        "scoring",
        "results",
        "files",
        "total_seconds",
    }
    data = results["data"]
    n_kept = 120 - math.floor(0.75 * 120)
    assert data["n_pool"] == 120 and data["n_pool_kept"] == n_kept == 30
    assert data["n_scored"] == 30
    rows = results["results"]
    assert [row["method"] for row in rows] == METHODS
    n_real = data["n_real_train"]
    assert [row["n_train"] for row in rows] == [n_real + 30] * 3 + [n_real + 120]
    for row in rows:
        assert 0.0 <= row["robust_accuracy"] <= row["clean_accuracy"] <= 1.0
        assert row["train_seconds"] > 0 and row["eval_seconds"] > 0
    scoring = results["scoring"]
    assert rows[0]["scoring_seconds"] == scoring["default"]["total_seconds"] > 0
    assert rows[1]["scoring_seconds"] == scoring["paper"]["total_seconds"] > 0
    assert rows[2]["scoring_seconds"] == rows[3]["scoring_seconds"] == 0.0
    for pruner in ("default", "paper"):
        assert 0 < scoring[pruner]["fraction_of_direct"] < 1
    assert results["settings"]["eps"] == 0.2
    assert results["settings"]["device"] == "cpu"


def test_files_are_written(demo):
    results, _, output_dir, _ = demo
    json_path = output_dir / "results.json"
    assert results["files"]["results"] == str(json_path)
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(results))
    for key, name in (("scores_plot", "scores.png"), ("accuracy_plot", "accuracy.png")):
        plot = output_dir / name
        assert results["files"][key] == str(plot)
        assert plot.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in output_dir.iterdir()) == [
        "accuracy.png",
        "results.json",
        "scores.png",
    ]


def test_the_table_is_printed(demo):
    results, _, _, printed = demo
    table = format_table(results["results"])
    assert table in printed
    lines = table.splitlines()
    assert lines[0] == HEADER
    assert [line[:23].rstrip() for line in lines[1:]] == METHODS


def test_same_random_state_same_numbers(demo):
    results, again, _, _ = demo
    for first, second in zip(results["results"], again["results"], strict=True):
        assert first["clean_accuracy"] == second["clean_accuracy"]
        assert first["robust_accuracy"] == second["robust_accuracy"]


def test_format_table():
    rows = [
        {
            "method": "real + pruned pool",
            "n_train": 2257,
            "clean_accuracy": 0.96851,
            "robust_accuracy": 0.5,
            "train_seconds": 24.84,
            "scoring_seconds": 12.06,
        },
        {
            "method": "real + full pool",
            "n_train": 3257,
            "clean_accuracy": 1.0,
            "robust_accuracy": 0.0,
            "train_seconds": 71.1,
            "scoring_seconds": 0.0,
        },
    ]
    assert format_table(rows).splitlines() == [
        HEADER,
        "real + pruned pool          2257      0.969       0.500     24.8       12.1",
        "real + full pool            3257      1.000       0.000     71.1          -",
    ]


def _fitted_pruner():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    return SimpleNamespace(scores_=scores, support_=scores >= 0.4)


DATA = SimpleNamespace(pool_mix_weight=np.array([0.7, 0.0, 0.6, 0.0, 0.0, 0.3]))


ROWS = [
    {"method": m, "n_train": n, "clean_accuracy": c, "robust_accuracy": r}
    for m, n, c, r in zip(
        METHODS,
        (30, 30, 30, 60),
        (0.9, 0.85, 0.8, 0.95),
        (0.5, 0.45, 0.4, 0.6),
        strict=True,
    )
]
SETTINGS = {"eval_steps": 20, "eps": 0.2}


def test_plots_are_skipped_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    notes = []
    assert _plot(_fitted_pruner(), DATA, ROWS, tmp_path, SETTINGS, notes.append) == (
        None,
        None,
    )
    (note,) = notes
    assert "'plot' extra" in note and "Skipping scores.png and accuracy.png" in note
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def figures(monkeypatch):
    """The figures saved while the test runs."""
    saved = []
    from matplotlib.figure import Figure

    original = Figure.savefig

    def savefig(self, *args, **kwargs):
        saved.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return saved


def test_plots_mark_scores_threshold_and_accuracies(tmp_path, figures):
    scores, accuracy = _plot(_fitted_pruner(), DATA, ROWS, tmp_path, SETTINGS, print)
    assert (scores, accuracy) == (
        str(tmp_path / "scores.png"),
        str(tmp_path / "accuracy.png"),
    )
    for path in (scores, accuracy):
        assert Path(path).read_bytes().startswith(b"\x89PNG")
    (ax,) = figures[0].axes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [
        "off-class pool samples (2)",
        "other pool samples (4)",
        "threshold 0.4 (lowest kept score)",
    ]
    (cut,) = ax.get_lines()
    assert cut.get_xdata()[0] == 0.4
    (ax,) = figures[1].axes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["clean", "robust (PGD-20 CE+CW, eps 0.2)"]
    heights = [round(bar.get_height(), 3) for bar in ax.patches]
    assert heights == [0.9, 0.85, 0.8, 0.95, 0.5, 0.45, 0.4, 0.6]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[3] == "real + full\npool\n(60 samples)"  # wrapped at 14
