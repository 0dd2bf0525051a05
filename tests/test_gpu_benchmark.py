"""benchmarks/gpu.py at tiny size on the CPU: the script a lent GPU runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_runs_at_tiny_size_on_the_cpu(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--tiny", "--device", "cpu"]
        + ["--out", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    saved = json.loads((tmp_path / "gpu.json").read_text())
    assert set(saved) >= {"peak", "training", "overhead", "pruner", "knn"}
    rates = saved["training"]["images_per_second"]
    assert {
        "AdversarialTrainer, float32",
        "AdversarialTrainer, bfloat16 AMP",
        "bare loop, float32",
    } <= set(rates)
    assert all(rate > 0 for rate in rates.values())
    assert saved["training"]["flops_per_image"] > 0
    assert saved["pruner"]["scored"] == 40
    # The device kNN finds the CPU extrapolator's neighbours.
    assert saved["knn"]["max_abs_difference"] < 1e-6
    # The table is printed last, and the work directory is gone.
    assert result.stdout.strip().splitlines()[-1].startswith("exact kNN")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu.json"]


def test_epoch_times_include_what_recording_hooks_do():
    # Recording and tracking run in on_epoch_end, after the trainer's own
    # epoch clock stops: the benchmark's epochs must include them.
    import time

    import torch

    from advprune.training import Callback
    from benchmarks.gpu import TINY, trainer_epochs

    class Sleeps(Callback):
        def on_epoch_end(self, trainer, **kwargs):
            time.sleep(0.2)

    cpu = torch.device("cpu")
    assert trainer_epochs(TINY, cpu, False, 32, callbacks=[Sleeps()]) >= 0.2
