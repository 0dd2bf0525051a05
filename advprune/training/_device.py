"""Devices, seeded generators, host-to-device batches and batched inference."""

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from itertools import islice
from numbers import Integral

import numpy as np
import torch

from ._distributed import local_cuda_device

__all__ = ["batched_forward", "resolve_device", "torch_generator"]

# Host threads that read batches ahead of a CUDA device by default: reading
# and converting the rows of a memory-mapped uint8 pool costs the host more
# than a GPU's forward pass over them (docs/gpu.rst has the measurement).
_READ_AHEAD_THREADS = 4


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


def torch_generator(random_state=None, device="cpu"):
    """Return a ``torch.Generator`` seeded from a scikit-learn style seed.

    Parameters
    ----------
    random_state : int, numpy.random.RandomState or None, default=None
        ``None`` draws a fresh seed from numpy's global generator, so that
        ``np.random.seed`` makes the run reproducible as in scikit-learn.
    device : str or torch.device, default="cpu"
        Where the generator draws. A CUDA generator draws its numbers on the
        GPU (the attacks' random starts, say), where a CPU one would draw them
        on one host thread and copy them over; the two give different numbers
        for the same seed.

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
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def to_device(tensor, device):
    """``tensor`` (on the CPU) on ``device``; to a CUDA device through pinned
    memory and without blocking the host, where a copy from pageable memory
    would wait for all the work queued on the device first."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def read_batches(read, items, device, n_workers=None):
    """Yield ``read(item)`` on ``device`` for each of ``items``, in order.

    ``read`` returns an array or tensor, or a tuple of them; a numpy array
    becomes a tensor of its own memory where it owns it, else of a copy (so
    a float32 batch should be read as one).
    On a CUDA device the copies go through pinned memory without blocking
    the host, and ``n_workers`` threads (``None``: ``_READ_AHEAD_THREADS``,
    at most one per core; elsewhere none) read up to twice their number of
    items ahead while the device works; 0 reads each item when it is due.
    """
    device = torch.device(device)
    if n_workers is None:
        n_workers = (
            min(_READ_AHEAD_THREADS, os.cpu_count() or 1)
            if device.type == "cuda"
            else 0
        )
    pin = device.type == "cuda"

    def load(item):
        parts = read(item)
        single = not isinstance(parts, tuple)
        parts = [_host_tensor(part) for part in ((parts,) if single else parts)]
        if pin:  # in the reading thread; to_device then finds them pinned
            parts = [part.pin_memory() for part in parts]
        return single, parts

    def moved(loaded):
        single, parts = loaded
        parts = tuple(to_device(part, device) for part in parts)
        return parts[0] if single else parts

    if n_workers == 0:
        for item in items:
            yield moved(load(item))
        return
    items = iter(items)
    pool = ThreadPoolExecutor(n_workers, thread_name_prefix="advprune-read")
    try:
        pending = deque(
            pool.submit(load, item) for item in islice(items, 2 * n_workers)
        )
        while pending:
            loaded = pending.popleft().result()
            pending.extend(pool.submit(load, item) for item in islice(items, 1))
            yield moved(loaded)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _host_tensor(part):
    """A CPU tensor of ``part``: a numpy array's own memory where the array
    owns it (a batch just read or converted), else a copy, so that nothing
    run on the batch can change the caller's data."""
    if isinstance(part, torch.Tensor):
        return part
    array = np.asarray(part)
    if array.base is not None or not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array)


@torch.no_grad()
def batched_forward(
    model,
    X,
    *,
    batch_size=512,
    device="cpu",
    transform=None,
    progress=None,
    n_workers=None,
    out=None,
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
    n_workers : int or None, default=None
        Host threads that read and convert batches of ``X`` ahead of the
        device, so that a GPU does not wait for a memory-mapped pool to be
        read: ``None`` uses 4 (at most one per core) on a CUDA device and
        none elsewhere; 0 reads each batch when it is due. On a CUDA device
        batches are copied through pinned memory without blocking the host,
        and each batch's output is copied back while the next one runs.
    out : ndarray of shape (n_samples, ...) or None, default=None
        Where to write the outputs as each batch's arrives (a memory-mapped
        array, say, for outputs larger than memory); ``None`` allocates a
        float32 array.

    Returns
    -------
    numpy.ndarray of shape (n_samples, ...)
        ``out``, or the float32 array allocated.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from advprune.training import batched_forward
    >>> model = torch.nn.Linear(3, 2)
    >>> batched_forward(model, np.zeros((5, 3)), batch_size=2).shape
    (5, 2)
    """
    if len(X) == 0:
        raise ValueError("X must contain at least one sample.")
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, Integral)
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}.")
    if n_workers is not None and (
        isinstance(n_workers, bool)
        or not isinstance(n_workers, Integral)
        or n_workers < 0
    ):
        raise ValueError(f"n_workers must be None or an int >= 0; got {n_workers!r}.")
    if out is not None and len(out) != len(X):
        raise ValueError(
            f"out must have one row per sample of X ({len(X)}); got {len(out)} rows."
        )
    slices = [
        slice(start, min(start + batch_size, len(X)))
        for start in range(0, len(X), batch_size)
    ]
    running = None

    def collect(result, rows):
        nonlocal out
        result = result.float().cpu().numpy()
        if out is None:
            out = np.empty((len(X), *result.shape[1:]), dtype=np.float32)
        out[rows] = result
        if progress is not None:
            progress.update(len(result))

    batches = read_batches(
        lambda rows: np.asarray(X[rows], dtype=np.float32), slices, device, n_workers
    )
    with closing(batches):  # an error in the model stops the readers
        for batch, rows in zip(batches, slices, strict=True):
            result = model(batch) if transform is None else transform(model, batch)
            # The last batch's output is copied back once this one is queued.
            if running is not None:
                collect(*running)
            running = result, rows
    collect(*running)
    return out
