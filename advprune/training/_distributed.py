"""Data-parallel training on torch.distributed: who this process is, its share
of a batch, and the merging of what each process recorded.

One rule decides every share: of ``n`` items, process ``rank`` of
``world_size`` takes positions ``rank, rank + world_size, ...``
(:func:`shard`). Everything a process records for its own share goes into
arrays that hold NaN elsewhere, and :func:`merge_disjoint` combines them: each
entry is taken from the one process that wrote it, so that every process ends
with the whole recording, bit for bit what that process computed.
"""

import os

import numpy as np
import torch
import torch.distributed as dist

__all__ = []


def world():
    """``(rank, world_size)`` of this process; ``(0, 1)`` outside a
    torch.distributed job."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_cuda_device():
    """The GPU of this process in a job started by torchrun (``LOCAL_RANK``),
    or None outside one."""
    if world()[1] > 1 and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return None


def shard(n, rank, world_size):
    """Positions of the ``n`` items of a batch that process ``rank`` takes."""
    return np.arange(rank, n, world_size)


def _communication_device():
    # NCCL reduces tensors on the process's GPU, gloo on the CPU.
    if dist.get_backend() == "nccl":
        return local_cuda_device() or torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def merge_disjoint(array, what):
    """Combine ``array`` across the processes of the job: every entry from the
    process that wrote it (not NaN there), NaN where none did.

    Every process calls this with an array of the same shape; the merged array
    is returned on every process. An entry written by more than one process
    means that two shards overlap, and raises RuntimeError naming ``what``.
    """
    array = np.asarray(array)
    written = ~np.isnan(array)
    device = _communication_device()
    # Sums of one value and zeros are exact; float16 is widened losslessly.
    dtype = torch.float64 if array.dtype == np.float64 else torch.float32
    values = torch.from_numpy(np.where(written, array, 0)).to(device, dtype)
    counts = torch.from_numpy(written.astype(np.int32)).to(device)
    dist.all_reduce(values)
    dist.all_reduce(counts)
    counts = counts.cpu().numpy()
    if (counts > 1).any():
        raise RuntimeError(
            f"{what}: {int((counts > 1).sum())} entries were recorded by more "
            "than one process; the shards of the processes overlap."
        )
    merged = values.cpu().numpy().astype(array.dtype)
    merged[counts == 0] = np.nan
    return merged


def broadcast_buffers(module):
    """Copy the buffers (batch-norm statistics) of process 0 to every process.

    Each process updates its own statistics from its own share of a batch;
    recordings and the returned model use process 0's, as
    DistributedDataParallel's own forward passes do.
    """
    device = _communication_device()
    for buffer in module.buffers():
        moved = buffer.detach().to(device)
        dist.broadcast(moved, 0)
        buffer.copy_(moved.to(buffer.device))


class GradientWeights:
    """State of :func:`weighted_allreduce`: this process's share of the batch
    whose gradients are being reduced."""

    weight = 1.0


def weighted_allreduce(state, bucket):
    """DistributedDataParallel communication hook: the sum over processes of
    each gradient times the process's share of the batch.

    A process's gradient is that of the mean loss over its own rows, so this
    sum is the gradient of the mean loss over the whole batch, also when the
    processes hold different numbers of rows (DDP's own hook averages them
    with equal weights).
    """
    tensor = bucket.buffer()
    tensor.mul_(state.weight)
    future = dist.all_reduce(tensor, async_op=True).get_future()
    return future.then(lambda done: done.value()[0])
