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
    assert set(saved) >= {"peak", "training", "profile", "overhead", "pruner"}
    assert set(saved) >= {"resume", "knn", "versions"}
    assert not [
        name
        for name, section in saved.items()
        if isinstance(section, dict) and "error" in section
    ]
    rates = saved["training"]["images_per_second"]
    assert {
        "AdversarialTrainer, float32",
        "AdversarialTrainer, bfloat16 AMP",
        "bare loop, float32",
    } <= set(rates)
    assert all(rate > 0 for rate in rates.values())
    assert saved["training"]["flops_per_image"] > 0
    assert saved["pruner"]["scored"] == 40
    passes = saved["pruner"]["pass_images_per_second"]
    assert {"AdversarialPruner.embed", "batched_forward, default"} <= set(passes)
    assert all(rate > 0 for rate in passes.values())
    # On the CPU a resumed run is bit for bit the uninterrupted one.
    resumed = saved["resume"]
    assert resumed["epochs_resumed"] == 3
    assert resumed["max_abs_weight_difference"] == 0
    assert resumed["max_abs_tracking_difference"] == 0
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


def test_kernels_are_grouped_by_the_names_seen_on_an_h200():
    from benchmarks.gpu import kernel_kind

    names = {
        "sm90_xmma_dgrad_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc": (
            "convolutions and matrix products"
        ),
        "void at::native::batch_norm_transform_input_channels_last_kernel<c10::"
        "BFloat16, float, float, 4>": "batch normalisation",
        "void cudnn::engines_precompiled::nchwToNhwcKernel<float>": (
            "layout conversions"
        ),
        "void at::native::vectorized_elementwise_kernel<8, at::native::CUDAFunctor_"
        "add<c10::BFloat16>>": "elementwise, reductions and the rest",
    }
    assert {name: kernel_kind(name) for name in names} == names
