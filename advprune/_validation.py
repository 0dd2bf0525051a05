"""Parameter constraints and input checks shared by the trainer and the estimators.

The adversarial-training parameters are declared once, here, and used by
:class:`advprune.training.AdversarialTrainer`, :class:`advprune.AdversarialPruner`
(for its scoring run) and :class:`advprune.AdversarialClassifier`, so that the
three accept the same values and cannot drift apart. Every check in this module
runs before any training starts and raises a ``ValueError`` or ``TypeError`` that
names the parameter and what was expected.
"""

import math
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from joblib import Memory
from sklearn.utils import column_or_1d
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.multiclass import check_classification_targets

from ._io import check_writable

__all__ = [
    "TRAINING_CONSTRAINTS",
    "check_bounds",
    "check_channels_first",
    "check_model_output",
    "check_writable_dir",
    "encode_labels",
    "scan_rows",
    "training_params",
    "validate_training_params",
]

TRAINING_CONSTRAINTS = {
    "method": [StrOptions({"pgd", "trades", "standard"})],
    "eps": [Interval(Real, 0, None, closed="left")],
    "norm": [StrOptions({"linf", "l2"})],
    "attack_steps": [Interval(Integral, 1, None, closed="left")],
    "step_size": [Interval(Real, 0, None, closed="neither"), None],
    "beta": [Interval(Real, 0, None, closed="left")],
    "epochs": [Interval(Integral, 1, None, closed="left")],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "optimizer": [StrOptions({"sgd", "adam"})],
    "lr": [Interval(Real, 0, None, closed="neither")],
    "momentum": [Interval(Real, 0, None, closed="left")],
    "nesterov": ["boolean"],
    "weight_decay": [Interval(Real, 0, None, closed="left")],
    "schedule": [StrOptions({"cosine", "multistep", "constant"})],
    "bounds": [tuple, list, None],
    "augment": [callable, None],
    "device": [str, torch.device],
    "amp": ["boolean", StrOptions({"float16", "bfloat16"})],
}
"""dict: Constraints of every parameter of the adversarial training run, in
scikit-learn's ``_parameter_constraints`` format."""


def training_params(obj):
    """The training parameters of an estimator or trainer, as a dict."""
    return {name: getattr(obj, name) for name in TRAINING_CONSTRAINTS}


def validate_training_params(params, caller_name):
    """Check training parameters against :data:`TRAINING_CONSTRAINTS`; return
    them with ``bounds`` normalised to a float pair or None."""
    validate_parameter_constraints(
        {name: TRAINING_CONSTRAINTS[name] for name in params}, params, caller_name
    )
    return {**params, "bounds": check_bounds(params["bounds"])}


def check_bounds(bounds):
    """``bounds`` as a ``(low, high)`` float pair, or None.

    Raises a ``TypeError`` unless it is None or a pair of real numbers, and a
    ``ValueError`` unless both are finite with ``low < high``.
    """
    if bounds is None:
        return None
    if (
        not isinstance(bounds, tuple | list)
        or len(bounds) != 2
        or any(isinstance(b, bool) or not isinstance(b, Real) for b in bounds)
    ):
        raise TypeError(
            f"bounds must be None or a (low, high) pair of numbers; got {bounds!r}."
        )
    low, high = float(bounds[0]), float(bounds[1])
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"bounds must be finite with low < high; got {bounds!r}.")
    return low, high


def encode_labels(y, n_samples):
    """Class labels of any kind scikit-learn accepts -> ``(codes, classes)``.

    ``y`` may be 1-D or a column vector (raveled with a
    ``DataConversionWarning``, as scikit-learn does); ``codes`` are int64 in
    ``[0, n_classes)`` with ``classes[codes] == y``.
    """
    if y is None:
        raise ValueError(
            "This estimator requires y to be passed, but the target y is None; "
            "pass one class label per row of X."
        )
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)
    if y.ndim != 1 or len(y) != n_samples:
        raise ValueError(
            f"y must be 1-D with one label per row of X ({n_samples}); got shape "
            f"{y.shape}."
        )
    check_classification_targets(y)
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(
            f"y must hold at least two classes; got one class: {classes[0]!r}."
        )
    return codes.astype(np.int64), classes


def check_channels_first(X):
    """Refuse float images that look channels-last, (n, height, width, 1 or 3).

    The networks read images as (n, channels, height, width); a channels-last
    batch would be read as images with ``height`` channels, silently.
    ``uint8`` images are presented channels-first by
    :class:`advprune.datasets.ImageArray` and never reach this check.
    """
    shape = tuple(X.shape)
    if len(shape) == 4 and shape[-1] in (1, 3) and shape[1] not in (1, 3):
        raise ValueError(
            f"X has shape {shape}, which looks channels-last (n, height, width, "
            f"channels); pass images channels-first, (n, channels, height, width), "
            f"e.g. np.moveaxis(X, -1, 1), or uint8 images through "
            f"advprune.datasets.ImageArray(images, layout='NHWC')."
        )


def scan_rows(X, *, bounds, chunk_size):
    """One pass over ``X``, ``chunk_size`` rows at a time: numeric dtype, no NaN
    or infinity, and every value inside ``bounds`` (when not None).

    A memory-mapped ``X`` is never loaded whole.
    """
    low, high = np.inf, -np.inf
    for start in range(0, X.shape[0], chunk_size):
        chunk = np.asarray(X[start : start + chunk_size])
        if chunk.dtype.kind not in "biuf":
            raise TypeError(f"X must be numeric; got dtype {chunk.dtype}.")
        if chunk.size == 0:
            continue
        if chunk.dtype.kind == "f" and not np.isfinite(chunk).all():
            raise ValueError("X contains NaN or infinity.")
        low, high = min(low, chunk.min()), max(high, chunk.max())
    if bounds is not None and (low < bounds[0] or high > bounds[1]):
        raise ValueError(
            f"X has values in [{low:g}, {high:g}], outside bounds={bounds}: the "
            f"attacks keep inputs inside bounds, so training would change X. Scale "
            f"images to [0, 1] (e.g. uint8 pixels / 255), or pass the bounds of "
            f"your data, or bounds=None for unbounded features."
        )


def check_model_output(model, X_sample, n_classes, *, name="model"):
    """A dry forward pass of ``model`` on a few samples, before any training.

    Raises a ``ValueError`` naming ``name`` when the model cannot take samples
    of this shape or does not return one logit per class.
    """
    batch = torch.as_tensor(np.array(X_sample, dtype=np.float32))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = model(batch)
    except Exception as exc:  # any failure of the user's forward pass
        raise ValueError(
            f"{name} cannot take samples of shape {tuple(batch.shape[1:])}: "
            f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        ) from exc
    finally:
        model.train(was_training)
    expected = (len(batch), n_classes)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        raise ValueError(
            f"{name} must map a batch of shape {tuple(batch.shape)} to logits of "
            f"shape {expected} (one column per class); got "
            f"{tuple(getattr(out, 'shape', ())) or type(out).__name__}."
        )


def check_writable_dir(directory, name):
    """Refuse, with a ``ValueError`` naming ``name``, a directory that cannot
    be created or written: ``memory`` (a path or a ``joblib.Memory``) or
    ``checkpoint_dir``, which training would otherwise find only when it
    first writes there. ``None`` and a ``Memory`` without a location pass.
    """
    if isinstance(directory, Memory):
        directory = directory.location
    if directory is None:
        return
    try:
        check_writable(directory)
    except OSError as exc:
        raise ValueError(
            f"{name}={str(directory)!r} cannot be written: "
            f"{exc.strerror or ' '.join(str(exc).split())}."
        ) from None
