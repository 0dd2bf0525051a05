"""Progress bars of every long step, in one style.

Every stage that can run for more than a few seconds (training batches,
recording, pool tracking, embedding, extrapolation, conversion, robust
evaluation) reports through :func:`progress_bar`, so that ``verbose`` means the
same everywhere and a data-parallel run draws each bar once, on its first
process, instead of once per process.
"""

import sys

from tqdm.auto import tqdm

__all__ = ["progress_bar"]


def _is_first_process():
    """False on the processes of a torch.distributed job other than rank 0.

    Imports nothing: a module that never touched torch.distributed cannot be
    inside a distributed job, and the numpy-only stages stay torch-free.
    """
    distributed = sys.modules.get("torch.distributed")
    if distributed is None or not distributed.is_available():
        return True
    return not distributed.is_initialized() or distributed.get_rank() == 0


def progress_bar(*, total, desc, unit="it", verbose=True, leave=True, initial=0):
    """A tqdm bar on stderr; a disabled one (every call a no-op) when not
    ``verbose`` or on a process other than the first of a distributed job.

    Parameters
    ----------
    total : int or float
        Units of work, for the ETA.
    desc : str
        What is running, e.g. ``"embedding"``.
    unit : str, default="it"
    verbose : bool, default=True
    leave : bool, default=True
        Keep the finished bar on screen; inner bars (one epoch's recording)
        pass ``False``.
    initial : int, default=0
        Work already done (a resumed run).

    Returns
    -------
    tqdm.tqdm
        Use as a context manager and call ``update(n)``.

    Examples
    --------
    >>> from advprune._progress import progress_bar
    >>> with progress_bar(total=3, desc="work", verbose=False) as bar:
    ...     for _ in range(3):
    ...         _ = bar.update(1)
    >>> bar.disable
    True
    """
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        leave=leave,
        dynamic_ncols=True,
        disable=not (verbose and _is_first_process()),
    )
