"""Devices, seeded generators and batched inference."""

from numbers import Integral

import numpy as np
import torch

from ._distributed import local_cuda_device

__all__ = ["batched_forward", "resolve_device", "torch_generator"]


def resolve_device(device="auto"):
    """Return the ``torch.device`` to train on.

    Parameters
    ----------
    device : str or torch.device, default="auto"
        ``"auto"`` picks CUDA when it is available, else the CPU. Anything else
        is passed to ``torch.device``. In a data-parallel job started by
        ``torchrun``, ``"auto"`` and ``"cuda"`` mean the process's own GPU,
        ``cuda:LOCAL_RANK``.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If ``device`` is not a device name, or names a CUDA device that this
        machine or this build of PyTorch does not have.

    Examples
    --------
    >>> from advprune.training import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, str) and device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or a torch.device; got {device!r}."
        ) from exc
    if resolved.type == "cuda" and resolved.index is None:
        resolved = local_cuda_device() or resolved
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(device)!r}, but CUDA is not available to this PyTorch "
            f"({torch.__version__}); use device='auto' or 'cpu', or install a CUDA "
            f"build of PyTorch."
        )
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise ValueError(
            f"device={str(device)!r}, but this machine has "
            f"{torch.cuda.device_count()} CUDA device(s)."
        )
    return resolved


def torch_generator(random_state=None):
    """Return a CPU ``torch.Generator`` seeded from a scikit-learn style seed.

    Parameters
    ----------
    random_state : int, numpy.random.RandomState or None, default=None
        ``None`` draws a fresh seed from numpy's global generator, so that
        ``np.random.seed`` makes the run reproducible as in scikit-learn.

    Returns
    -------
    torch.Generator

    Examples
    --------
    >>> import torch
    >>> from advprune.training import torch_generator
    >>> g = torch_generator(0)
    >>> int(torch.randint(10, (1,), generator=g))
    4
    """
    if isinstance(random_state, Integral):
        seed = int(random_state)
    else:
        rng = (
            random_state
            if isinstance(random_state, np.random.RandomState)
            else np.random.mtrand._rand
        )
        seed = int(rng.randint(np.iinfo(np.int32).max))
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


@torch.no_grad()
def batched_forward(
    model, X, *, batch_size=512, device="cpu", transform=None, progress=None
):
    """Apply ``model`` (or ``transform(model, batch)``) to ``X`` in batches.

    The model's train/eval mode is left as it is: callers that want inference
    behaviour put the model in eval mode first. ``X`` is read batch by batch, so
    a memory-mapped array is never loaded whole.

    Parameters
    ----------
    model : torch.nn.Module
    X : array-like of shape (n_samples, ...)
    batch_size : int, default=512
    device : str or torch.device, default="cpu"
    transform : callable or None, default=None
        ``transform(model, x_batch) -> tensor``; ``None`` calls ``model(x)``.
    progress : tqdm.tqdm or None, default=None
        A progress bar advanced by the rows of each batch.

    Returns
    -------
    numpy.ndarray of shape (n_samples, ...), float32

    Examples
    --------
    >>> import numpy as np, torch
    >>> from advprune.training import batched_forward
    >>> model = torch.nn.Linear(3, 2)
    >>> batched_forward(model, np.zeros((5, 3)), batch_size=2).shape
    (5, 2)
    """
    device = torch.device(device)
    outputs = []
    for start in range(0, len(X), batch_size):
        # np.array copies, so a read-only memmap's batch becomes writable.
        batch = torch.from_numpy(
            np.array(X[start : start + batch_size], dtype=np.float32)
        ).to(device)
        out = model(batch) if transform is None else transform(model, batch)
        outputs.append(out.float().cpu().numpy())
        if progress is not None:
            progress.update(len(batch))
    if not outputs:
        raise ValueError("X must contain at least one sample.")
    return np.concatenate(outputs)
