"""What the benchmarks share: where results go, atomic writes, the machine."""

import os
import platform
from pathlib import Path

import numpy as np
import torch

import advprune
from advprune._io import replacing, write_json

__all__ = ["RESULTS", "environment", "jsonable", "save_json", "save_npz"]

RESULTS = Path(__file__).resolve().parent / "results"


def jsonable(value):
    """``value`` with numpy scalars and tuples turned into JSON types."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_json(path, payload):
    """Write ``payload`` as JSON to ``path``, atomically, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, jsonable(payload))


def save_npz(path, arrays):
    """Write ``arrays`` to a compressed ``.npz`` at ``path``, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as temporary, open(temporary, "wb") as f:
        np.savez_compressed(f, **arrays)


def environment():
    """The machine and versions a result was measured with."""
    return {
        "advprune": advprune.__version__,
        "torch": torch.__version__,
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()),
    }
