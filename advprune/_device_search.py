"""Exact nearest-neighbour candidates by matrix products on a torch device.

The exact search of :class:`advprune.ImportanceExtrapolator` with ``device=``:
the scored embeddings stay resident on the device, and each chunk of queries
costs one float32 matrix product and one top-k there. It returns what FAISS's
exact search returns (float32 squared distances ``|q|^2 + |r|^2 - 2 q.r`` and
the indices of the ``k`` smallest), so the extrapolator's float64 re-ranking of
near-ties applies unchanged.
"""

# SPDX-License-Identifier: BSD-3-Clause

from contextlib import contextmanager

import numpy as np
import torch

from .training._device import resolve_device

__all__ = ["DeviceReferences"]


@contextmanager
def _float32_matmul():
    """Full float32 matrix products, never TF32: the re-ranking's error bound
    assumes float32 round-off."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


class DeviceReferences:
    """Float32 reference rows resident on a device, searched exhaustively.

    Parameters
    ----------
    references : ndarray of shape (n_references, n_features), float32
        The (centred) scored embeddings.
    device : str or torch.device
        Where they live and the search runs (see
        :func:`advprune.training.resolve_device`).
    """

    def __init__(self, references, device):
        self.device = resolve_device(device)
        self.references = torch.from_numpy(np.ascontiguousarray(references)).to(
            self.device
        )
        self.squared_norms = torch.einsum("ij,ij->i", self.references, self.references)

    def search(self, queries, k):
        """Squared float32 distances and indices of the ``k`` nearest
        references of each query, nearest first.

        Parameters
        ----------
        queries : ndarray of shape (n_queries, n_features), float32
        k : int

        Returns
        -------
        squared : ndarray of shape (n_queries, k), float32
        indices : ndarray of shape (n_queries, k), int64
        """
        q = torch.from_numpy(np.ascontiguousarray(queries)).to(self.device)
        with _float32_matmul():
            products = q @ self.references.T
        squared = (
            torch.einsum("ij,ij->i", q, q)[:, None] + self.squared_norms - 2 * products
        ).clamp_min_(0)
        # One neighbour more than asked: where the (k+1)-th distance equals the
        # k-th, more references than k tie there and top-k keeps an arbitrary
        # few of them; as FAISS does, keep the lowest indices (a stable sort of
        # those rows; exact ties are rare outside duplicated samples).
        found = min(k + 1, squared.shape[1])
        values, indices = torch.topk(squared, found, dim=1, largest=False)
        tied = values[:, k - 1] == values[:, -1] if found > k else None
        values, indices = values[:, :k], indices[:, :k]
        if tied is not None and tied.any():
            rows = tied.nonzero().squeeze(1)
            ordered = torch.sort(squared[rows], dim=1, stable=True)
            values[rows] = ordered.values[:, :k]
            indices[rows] = ordered.indices[:, :k]
        return values.cpu().numpy(), indices.cpu().numpy()
