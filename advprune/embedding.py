"""Stage 4 of the method: embed every sample of the pool in a feature space.

The extrapolation step (:mod:`advprune.extrapolation`) predicts the importance
of unscored samples from their position in a feature space. This module turns
an embedding choice into a fitted embedding and applies it to samples:

- ``"model"``: the penultimate features of the trained scoring model (the
  default, as in Schmidt et al. 2025; the paper used a pretrained network);
- ``"raw"``: the flattened input;
- a scikit-learn transformer (e.g. ``PCA(32)``), fitted on the scored subset;
- a ``torch.nn.Module`` applied in eval mode, or any callable from a batch of
  samples to an array of shape (batch, d).

:class:`EmbeddedRows` presents the embedding of a pool, possibly memory-mapped
and larger than memory, as an array whose rows are computed when read, so that
the extrapolation reads it chunk by chunk like any other array.
"""

import copy
import time

import numpy as np
import torch
from sklearn.base import clone

from .models import penultimate_features
from .training import batched_forward, resolve_device

__all__ = ["EmbeddedRows", "check_embedding", "embed", "fit_embedding"]

EMBEDDINGS = ("model", "raw")


def _is_transformer(obj):
    return hasattr(obj, "fit") and hasattr(obj, "transform")


class _PenultimateFeatures(torch.nn.Module):
    """The scoring model as an embedding: its penultimate features."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return penultimate_features(self.model, x)


def fit_embedding(embedding, model, X_subset):
    """Turn an embedding choice into a fitted embedding.

    Parameters
    ----------
    embedding : {"model", "raw"}, transformer, torch.nn.Module or callable
        See the module docstring. A transformer is cloned and fitted on the
        flattened ``X_subset``; a module is deep-copied and put in eval mode.
    model : torch.nn.Module
        The trained scoring model, for ``"model"``.
    X_subset : ndarray of shape (n_scored, ...)
        The scored samples, for fitting a transformer.

    Returns
    -------
    fitted : "raw", fitted transformer, torch.nn.Module or callable
        What :func:`embed` takes.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn.decomposition import PCA
    >>> from advprune.embedding import embed, fit_embedding
    >>> X = np.random.default_rng(0).random((20, 6)).astype("float32")
    >>> fitted = fit_embedding(PCA(2), None, X)
    >>> embed(fitted, X).shape
    (20, 2)
    >>> net = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(),
    ...                           torch.nn.Linear(4, 3))
    >>> embed(fit_embedding("model", net, X), X).shape
    (20, 4)
    """
    if isinstance(embedding, str):
        if embedding == "model":
            return _PenultimateFeatures(model).eval()
        if embedding == "raw":
            return "raw"
        raise ValueError(f"embedding must be one of {EMBEDDINGS}; got {embedding!r}.")
    if _is_transformer(embedding):
        return clone(embedding).fit(np.reshape(X_subset, (len(X_subset), -1)))
    if isinstance(embedding, torch.nn.Module):
        return copy.deepcopy(embedding).eval()
    if callable(embedding):
        return embedding
    raise TypeError(
        "embedding must be 'model', 'raw', a scikit-learn transformer, a callable "
        f"or a torch.nn.Module; got {type(embedding).__name__}."
    )


def check_embedding(embedding, X, n_fit):
    """Try an embedding choice on the data before any training, so that one
    that cannot embed it fails first, not after the scoring run.

    A transformer is fitted (a clone) on ``n_fit`` rows of ``X``, as many as
    it will be fitted on after the scoring run, then applied to two; a module
    or a callable is applied to two rows. ``"model"`` and ``"raw"`` need no
    trial. Raises a ``ValueError`` that names ``embedding``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from advprune.embedding import check_embedding
    >>> X = np.random.default_rng(0).random((20, 6))
    >>> check_embedding(PCA(2), X, n_fit=10)
    >>> check_embedding(PCA(8), X, n_fit=10)
    Traceback (most recent call last):
    ...
    ValueError: embedding=PCA(n_components=8) cannot embed samples of shape (6,): ...
    """
    if isinstance(embedding, str):
        return
    try:
        fitted = fit_embedding(embedding, None, X[:n_fit])
        embed(fitted, X[:2])
    except Exception as exc:  # any failure of the user's embedding
        raise ValueError(
            f"embedding={embedding!r} cannot embed samples of shape "
            f"{tuple(X.shape[1:])}: {type(exc).__name__}: {' '.join(str(exc).split())}"
        ) from exc


def embed(fitted, X, *, batch_size=512, device="cpu", progress=None, out=None):
    """Embed samples with a fitted embedding.

    Parameters
    ----------
    fitted : "raw", fitted transformer, torch.nn.Module or callable
        The result of :func:`fit_embedding`.
    X : array-like of shape (n_samples, ...)
        Samples. A module reads them batch by batch (on host threads ahead of
        a GPU, see :func:`~advprune.training.batched_forward`); the other
        embeddings read them whole (use :class:`EmbeddedRows` for large
        pools).
    batch_size : int, default=512
        Batch size of a module's forward passes.
    device : str or torch.device, default="cpu"
        Where a module runs; it is moved back to the CPU afterwards.
    progress : tqdm.tqdm or None, default=None
        A progress bar advanced by the rows embedded (batch by batch for a
        module).
    out : ndarray of shape (n_samples, d) or None, default=None
        Where to write the embedding; a module writes it batch by batch, so
        ``X`` and ``out`` may both be memory-mapped and larger than memory.
        ``None`` allocates it.

    Returns
    -------
    E : ndarray of shape (n_samples, d), float32
        Finite features, one row per sample (``out`` where given).

    Examples
    --------
    >>> import numpy as np
    >>> from advprune.embedding import embed
    >>> embed("raw", np.zeros((3, 1, 2, 2))).shape
    (3, 4)
    """
    n = len(X)
    if isinstance(fitted, torch.nn.Module):
        return _embed_by_module(
            fitted, X, batch_size, resolve_device(device), progress, out
        )
    if isinstance(fitted, str):
        E = np.asarray(X, dtype=np.float32).reshape(n, -1)
    elif _is_transformer(fitted):
        E = fitted.transform(np.asarray(X, dtype=np.float32).reshape(n, -1))
    else:
        E = fitted(X)
    if progress is not None:
        progress.update(n)
    E = np.asarray(E, dtype=np.float32)
    _check_rows(E, n)
    E = E.reshape(n, -1)
    if not np.isfinite(E).all():
        raise ValueError("The embedding produced NaN or infinite features.")
    if out is None:
        return E
    out[...] = E
    return out


def _embed_by_module(module, X, batch_size, device, progress, out):
    """``embed`` by a network, batch by batch into ``out``; each batch's
    features are checked on the device (a check of the whole output at the
    end would hold a mask as large as a quarter of it)."""
    finite = []

    def features(module, x):
        f = module(x)
        _check_rows(f, len(x))
        f = f.reshape(len(x), -1)
        finite.append(torch.isfinite(f).all())
        return f

    E = batched_forward(
        module.to(device),
        X,
        batch_size=batch_size,
        device=device,
        transform=features,
        progress=progress,
        out=out,
    )
    module.cpu()
    if not torch.stack(finite).all():
        raise ValueError("The embedding produced NaN or infinite features.")
    return E


def _check_rows(E, n):
    if E.ndim == 0 or len(E) != n:
        raise ValueError(
            f"embedding must return one row per sample: {n} rows; got an array of "
            f"shape {tuple(E.shape)}."
        )


class EmbeddedRows:
    """The embedding of ``X`` as a read-only array computed row block by row block.

    Indexing with a slice, an index array or a mask embeds those rows of ``X``
    only, so a memory-mapped pool larger than memory can be embedded and
    extrapolated chunk by chunk. ``seconds`` accumulates the time spent
    embedding in this process.

    Parameters
    ----------
    X : array-like of shape (n_samples, ...)
        The samples; a ``np.memmap`` or :class:`advprune.datasets.ImageArray`
        is read only where indexed.
    fitted : "raw", fitted transformer, torch.nn.Module or callable
        The result of :func:`fit_embedding`.
    batch_size : int, default=512
    device : str or torch.device, default="cpu"
    progress : tqdm.tqdm or None, default=None
        A progress bar advanced by every row embedded in this process; it is
        not pickled (a joblib or Dask worker embeds without it).

    Examples
    --------
    >>> import numpy as np
    >>> from advprune.embedding import EmbeddedRows
    >>> E = EmbeddedRows(np.arange(12.0).reshape(3, 2, 2), "raw")
    >>> E.shape
    (3, 4)
    >>> E[1:].tolist()
    [[4.0, 5.0, 6.0, 7.0], [8.0, 9.0, 10.0, 11.0]]
    """

    def __init__(self, X, fitted, *, batch_size=512, device="cpu", progress=None):
        self.X = X
        self.fitted = fitted
        self.batch_size = batch_size
        self.device = device
        self.seconds = 0.0
        self.progress = None
        self.shape = (X.shape[0], self[:1].shape[1])
        # Attached after the probe of the width, which is not work on the pool.
        self.progress = progress

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, rows):
        started = time.perf_counter()
        # A module reads its rows batch by batch, on host threads ahead of a
        # GPU (batched_forward); other embeddings take them whole.
        selected = (
            _Rows(self.X, rows)
            if isinstance(self.fitted, torch.nn.Module)
            else self.X[rows]
        )
        E = embed(
            self.fitted,
            selected,
            batch_size=self.batch_size,
            device=self.device,
            progress=self.progress,
        )
        self.seconds += time.perf_counter() - started
        return E

    def __getstate__(self):
        # A bar holds a lock and a stream; workers embed without one.
        return {**self.__dict__, "progress": None}


class _Rows:
    """The rows ``X[rows]`` of an array-like, read only as they are indexed."""

    def __init__(self, X, rows):
        self.X = X
        if isinstance(rows, slice):
            self.rows = np.arange(*rows.indices(len(X)))
        else:
            rows = np.asarray(rows)
            if rows.dtype == bool and len(rows) != len(X):
                raise IndexError(
                    f"boolean index of length {len(rows)} does not match the "
                    f"{len(X)} rows."
                )
            self.rows = np.flatnonzero(rows) if rows.dtype == bool else rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, key):
        return self.X[self.rows[key]]
