"""advprune: data pruning for adversarial training by importance extrapolation.

The public estimators load lazily, so that the array-level core
(:mod:`advprune.scores`, :mod:`advprune.selection`,
:mod:`advprune.extrapolation`) can be imported without PyTorch.
"""

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "AdversarialPruner": "advprune.pruning",
    "ImportanceExtrapolator": "advprune.extrapolation",
    "AdversarialClassifier": "advprune.classifier",
    "make_pipeline": "advprune.pipeline",
}

__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'advprune' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
