"""uint8 images, typically a memory map, presented to the estimators as float32
in [0, 1] and channels first, converted only as rows are read
(:class:`ImageArray`); pickled by file reference where they are mapped."""

import math
import numbers
import os

import numpy as np

from .._mmap import mapping_owner, read_only_span, release_span

_LAYOUTS = ("NHWC", "NCHW")


class ImageArray:
    """Read-only float32 view, in [0, 1] and channels first, of uint8 images.

    Wraps a ``uint8`` image array, typically a memory map of a file with
    millions of images, and presents it as the float32 array of shape
    ``(n, channels, height, width)`` with values ``images / 255`` that the
    estimators of :mod:`advprune` and the default models expect. Nothing is
    converted up front: indexing converts only the selected rows, so a
    chunked reader such as :class:`~advprune.AdversarialPruner` (``fit``,
    ``score_samples``) or :func:`advprune.training.batched_forward` streams a
    pool from disk with memory bounded by its chunk size.

    Parameters
    ----------
    images : numpy.ndarray of dtype uint8 and 4 dimensions
        The stored images, values 0..255; a ``np.memmap`` (e.g. from
        :func:`load_pool`) or an in-memory array. Never modified.
    layout : {"NHWC", "NCHW"}, default="NHWC"
        Axis order of ``images``: ``"NHWC"`` is (n, height, width, channels),
        the layout of published generated pools and of most image files;
        ``"NCHW"`` is already channels first, as CIFAR-10's binary records.
    release_pages : bool, default=True
        After each read from a read-only file mapping (a ``np.memmap`` in
        mode ``"r"``), tell the kernel that this process no longer needs the
        mapped pages (``madvise(MADV_DONTNEED)``). Pages of a file mapping
        count towards the resident set once read and are only reclaimed under
        memory pressure, so without this a pass over a 3 GB pool shows a 3 GB
        resident set even though the memory is reclaimable page cache. The
        file and the page cache are untouched: a later read of the same rows
        maps them again without disk access when they are still cached.
        Index arrays and masks are read 16 rows at a time, releasing after
        each block: for scattered rows the kernel maps whole cached folios
        around every page fault (2,000 random rows of a 3 GB pool mapped
        2.2 GB at once). An index array of consecutive rows is read as the
        slice it selects, in one block. No effect on in-memory arrays, writable or
        copy-on-write maps, or platforms without ``madvise``.

    Attributes
    ----------
    shape : tuple of int
        ``(n, channels, height, width)``.
    dtype : numpy.dtype
        Always float32, the dtype of what indexing returns.
    ndim : int
        Always 4.
    size : int
        Number of elements of the float32 view.
    images : numpy.ndarray
        The wrapped uint8 array, as given.
    layout : str
        The layout of ``images``.

    Notes
    -----
    Indexing selects rows first: ``X[i]``, ``X[a:b]``, ``X[indices]`` with a
    1-D integer array, ``X[mask]`` with a 1-D boolean mask, and tuples such
    as ``X[indices, 0]`` whose further entries apply to the converted rows.
    Every access returns a new, writable ``numpy.ndarray`` of float32 equal to
    ``np.moveaxis(images[rows], -1, 1) / np.float32(255)`` (for ``"NHWC"``).
    ``np.asarray(X)`` converts ALL rows at once, four bytes per stored byte
    (12 GB for a million 32x32x3 images): avoid it for large pools.

    Pickling keeps a memory map a memory map: when ``images`` is a
    C-contiguous region of a file-backed ``np.memmap`` (not copy-on-write),
    an ImageArray pickles as the file's path, offset and shape, and the
    unpickled copy maps the same file read-only, so joblib and Dask workers
    receive a few hundred bytes instead of the pool; the file must be
    readable at the same path where it is unpickled. Other arrays pickle by
    value. For the same reason ``joblib.hash`` of a memory-mapped ImageArray
    reflects the file's path and region, not its contents.

    Examples
    --------
    >>> import numpy as np
    >>> from advprune.datasets import ImageArray
    >>> images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    >>> X = ImageArray(images)
    >>> X.shape, X.dtype
    ((2, 3, 4, 4), dtype('float32'))
    >>> X[0].shape
    (3, 4, 4)
    >>> X[1, 2, 0, 0] == images[1, 0, 0, 2] / np.float32(255)
    np.True_
    >>> np.array_equal(np.asarray(X), images.transpose(0, 3, 1, 2) / np.float32(255))
    True
    """

    def __init__(self, images, *, layout="NHWC", release_pages=True):
        if not isinstance(images, np.ndarray):
            raise TypeError(
                "images must be a numpy array of uint8 images (e.g. a np.memmap); "
                f"got {type(images).__name__}."
            )
        if images.dtype != np.uint8:
            raise TypeError(
                f"images must have dtype uint8 (values 0..255); got {images.dtype}."
            )
        if images.ndim != 4:
            raise ValueError(
                "images must be 4-D, (n, height, width, channels) or (n, channels, "
                f"height, width); got shape {images.shape}."
            )
        if not isinstance(layout, str) or layout not in _LAYOUTS:
            raise ValueError(f"layout must be 'NHWC' or 'NCHW'; got {layout!r}.")
        self._images = images
        self._layout = layout
        self._release_pages = bool(release_pages)
        n, a, b, c = images.shape
        self._shape = (n, c, a, b) if layout == "NHWC" else (n, a, b, c)
        self._mapping = read_only_span(images) if self._release_pages else None

    @property
    def shape(self):
        return self._shape

    @property
    def dtype(self):
        return np.dtype(np.float32)

    @property
    def ndim(self):
        return 4

    @property
    def size(self):
        return math.prod(self._shape)

    @property
    def images(self):
        return self._images

    @property
    def layout(self):
        return self._layout

    def __len__(self):
        return self._shape[0]

    def __repr__(self):
        source = _file_source(self._images)
        where = "in memory" if source is None else f"file={source[0]!r}"
        return (
            f"ImageArray(shape={self._shape}, dtype=float32, "
            f"layout={self._layout!r}, {where})"
        )

    def __getitem__(self, key):
        if isinstance(key, tuple):
            rows, rest = (key[0], key[1:]) if key else (slice(None), ())
        else:
            rows, rest = key, ()
        rows = _consecutive_as_slice(_check_rows(rows), len(self))
        if self._mapping is not None and isinstance(rows, np.ndarray):
            out = self._gather(rows)
        else:
            out = self._convert(self._images[rows])
            # Released only after the conversion: a slice of a memory map is
            # a view, read while dividing.
            self._release()
        if not rest:
            return out
        return (
            out[rest]
            if isinstance(rows, numbers.Integral)
            else out[(slice(None), *rest)]
        )

    def __array__(self, dtype=None, copy=None):
        if copy is False:
            raise ValueError(
                "ImageArray converts its uint8 images on every access, so "
                "np.asarray(..., copy=False) cannot avoid a copy."
            )
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __reduce__(self):
        source = _file_source(self._images)
        if source is None:
            return (_image_array, (self._images, self._layout, self._release_pages))
        return (_reopen_image_array, (*source, self._layout, self._release_pages))

    def _convert(self, block, out=None):
        """float32 channels-first copy of a uint8 block of stored rows."""
        if self._layout == "NHWC":
            block = np.moveaxis(block, -1, -3)
        if out is None:
            out = np.empty(block.shape, dtype=np.float32)
        np.divide(block, np.float32(255), out=out)
        return out

    def _gather(self, rows):
        """Rows of an index array or mask of a released memory map, read
        ``_GATHER_ROWS`` at a time with the pages released after each block.

        A scattered read maps far more of the file than it uses: the kernel
        maps whole cached folios around each page fault (docs/data.rst gives
        the measurement), so a random subset read in one go would show most of
        the pool in the resident set.
        """
        if rows.dtype == bool:
            if rows.shape[0] != len(self):
                raise IndexError(
                    f"boolean index of length {rows.shape[0]} does not match the "
                    f"{len(self)} rows of the ImageArray."
                )
            rows = np.flatnonzero(rows)
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.float32)
        for start in range(0, len(rows), _GATHER_ROWS):
            stop = start + _GATHER_ROWS
            self._convert(self._images[rows[start:stop]], out=out[start:stop])
            self._release()
        return out

    def _release(self):
        release_span(self._mapping)


# Rows of a scattered read mapped at once before their pages are released
# (see ImageArray._gather). Each may map a whole cached folio: with 128, the
# 200 scattered rows of a scored subset of a 60,000-image pool raised the peak
# resident set by 33 MB over 16 (advprune prune-pool, tests/test_cli.py's
# resident-set test), at no measurable cost in read time.
_GATHER_ROWS = 16


def _image_array(images, layout, release_pages):
    return ImageArray(images, layout=layout, release_pages=release_pages)


def _reopen_image_array(filename, offset, shape, layout, release_pages):
    images = np.memmap(filename, dtype=np.uint8, mode="r", offset=offset, shape=shape)
    return ImageArray(images, layout=layout, release_pages=release_pages)


def _check_rows(rows):
    """A row index numpy applies to the first axis only, or IndexError."""
    if isinstance(rows, slice) or (
        isinstance(rows, numbers.Integral) and not isinstance(rows, bool)
    ):
        return rows
    index = np.asarray(rows)
    if index.ndim == 0 and index.dtype.kind in "iu":
        return int(index)
    if index.ndim == 1 and index.size == 0 and not isinstance(rows, np.ndarray):
        # An empty list converts to float64; numpy reads it as no rows.
        return index.astype(np.intp)
    if index.ndim != 1 or index.dtype.kind not in "biu":
        raise IndexError(
            "ImageArray selects rows by an int, a slice, a 1-D integer array or a "
            f"1-D boolean mask; got {type(rows).__name__} of shape {index.shape} "
            f"and dtype {index.dtype}."
        )
    return index


def _consecutive_as_slice(rows, n):
    """An index array of consecutive rows in ``range(n)`` as the slice it
    selects (one block read instead of ``_GATHER_ROWS`` at a time; see
    docs/gpu.rst); any other index as it is."""
    if (
        isinstance(rows, np.ndarray)
        and rows.dtype.kind in "iu"
        and rows.size > 1
        and rows[0] >= 0
        and rows[-1] < n
        and int(rows[-1]) - int(rows[0]) + 1 == rows.size
        and (np.diff(rows) == 1).all()
    ):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def _file_source(array):
    """(filename, offset, shape) of a C-contiguous region of a shared file
    mapping, from which the same bytes can be mapped again; else None."""
    owner = mapping_owner(array)
    if (
        owner is None
        or owner.filename is None
        or owner.mode == "c"
        or array.size == 0
        or not array.flags.c_contiguous
    ):
        return None
    offset = owner.offset + (array.ctypes.data - owner.ctypes.data)
    return os.fspath(owner.filename), int(offset), tuple(array.shape)


# Pickled under the package's path, as before the split into modules, so that
# pickles do not depend on the name of this module.
_image_array.__module__ = _reopen_image_array.__module__ = "advprune.datasets"
