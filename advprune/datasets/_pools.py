"""Pools on disk: ``.npy`` files written block by block and atomically
(:func:`save_npy_chunked`), opened as read-only memory maps (:func:`load_npy_pair`,
:func:`load_pool`), and generated pools in the published ``.npz`` layout converted
to them (:func:`convert_npz_pool`), with the free disk space checked first."""

import contextlib
import math
import numbers
import os
import zipfile
import zlib

import numpy as np

from .._io import (
    MANIFEST,
    check_free_space,
    check_manifest,
    replacing,
    replacing_all,
    write_npy,
)
from .._mmap import read_only_span, release_span
from .._progress import progress_bar
from ._imagearray import _GATHER_ROWS, ImageArray
from ._paths import _check_input_file, _check_output_file, _check_path

_POOL_IMAGES = "images.npy"
_POOL_LABELS = "labels.npy"


def _check_shape_dtype(shape, dtype):
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    try:
        shape = tuple(_as_index(s) for s in shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple of ints; got {shape!r}.") from None
    if not shape or min(shape) < 0:
        raise ValueError(
            f"shape must be a non-empty tuple of non-negative ints; got {shape}."
        )
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise TypeError(f"dtype must not hold Python objects; got {dtype}.")
    return shape, dtype


def _as_index(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError
    return int(value)


def save_npy_chunked(path, chunks, *, shape, dtype):
    """Write an array larger than memory to a ``.npy`` file, block by block, atomically.

    The blocks of rows are written to a temporary file next to ``path``,
    flushed to disk, and renamed over ``path``; an error or a crash at any
    point leaves no partial file under ``path`` (a previous file there stays
    as it was until the rename). The result opens as a memory map with
    ``np.load(path, mmap_mode="r")``.

    Parameters
    ----------
    path : str or path
        The file to write; its directory must exist. An existing file is
        replaced.
    chunks : iterable of array-like
        Consecutive blocks of rows, each of shape ``(k, *shape[1:])``, whose
        dtypes cast safely to ``dtype``; together exactly ``shape[0]`` rows.
        Consumed one at a time (a generator keeps memory bounded).
    shape : tuple of int
        Shape of the whole array.
    dtype : data-type
        Dtype of the stored array; no Python objects.

    Returns
    -------
    path : pathlib.Path
        The written file.

    Raises
    ------
    TypeError
        If ``shape`` or ``dtype`` is invalid, or a block's dtype does not cast
        safely to ``dtype``.
    ValueError
        If ``path`` is a directory or its directory does not exist, or the
        blocks do not have the declared shape or row count.
    OSError
        If the disk lacks space for the file (checked before writing) or the
        file cannot be written.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from advprune.datasets import save_npy_chunked
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = Path(tmp.name) / "scores.npy"
    >>> blocks = (np.full(3, i, dtype=np.float64) for i in range(4))
    >>> save_npy_chunked(path, blocks, shape=(12,), dtype=np.float64).name
    'scores.npy'
    >>> np.load(path, mmap_mode="r")[::3].tolist()
    [0.0, 1.0, 2.0, 3.0]
    >>> tmp.cleanup()
    """
    path = _check_output_file(path, "path")
    shape, dtype = _check_shape_dtype(shape, dtype)
    check_free_space(path.parent, math.prod(shape) * dtype.itemsize, str(path))
    with replacing(path) as temporary:
        write_npy(temporary, chunks, shape, dtype)
    return path


def _open_npy(path, name):
    path = _check_input_file(path, name)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        # np.load reports damaged headers and data as ValueError, EOFError,
        # OSError or SyntaxError; all mean the same to the user.
        raise ValueError(
            f"{name}: cannot read {str(path)!r} as a .npy array without "
            f"unpickling; it is truncated, corrupt or pickled ({exc})"
        ) from None
    if isinstance(array, np.lib.npyio.NpzFile):
        array.close()
        raise ValueError(
            f"{name}: {str(path)!r} is an .npz archive, not a .npy file; convert it "
            "once with advprune.datasets.convert_npz_pool."
        )
    return array


def load_npy_pair(X_path, y_path):
    """Open a pair of ``.npy`` files, samples and labels, as read-only memory maps.

    Nothing is read but the headers: the arrays are memory-mapped
    (``mmap_mode="r"``) and never unpickled (``allow_pickle=False``), and
    their shapes and dtypes are checked against each other.

    Parameters
    ----------
    X_path : str or path
        ``.npy`` file of the samples: a numeric array of shape
        ``(n_samples, n_features)`` or ``(n_samples, *sample_shape)``, with
        ``n_samples > 0``.
    y_path : str or path
        ``.npy`` file of the labels: integers of shape (n_samples,).

    Returns
    -------
    X : numpy.memmap
        The samples as stored. Wrap ``uint8`` images in :class:`ImageArray`
        for the estimators (or use :func:`load_pool`).
    y : numpy.memmap of shape (n_samples,)
        The labels as stored.

    Raises
    ------
    TypeError
        If a path is not a str or path.
    FileNotFoundError
        If a file does not exist.
    ValueError
        If a file is truncated or corrupt, holds pickled data or Python
        objects, is an ``.npz`` archive, or the arrays do not fit: X not
        numeric or with fewer than 2 dimensions or no rows, y not 1-D
        integers, or lengths that differ. The message names the file.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from advprune.datasets import load_npy_pair
    >>> tmp = tempfile.TemporaryDirectory()
    >>> folder = Path(tmp.name)
    >>> np.save(folder / "X.npy", np.zeros((5, 3), dtype=np.float32))
    >>> np.save(folder / "y.npy", np.arange(5))
    >>> X, y = load_npy_pair(folder / "X.npy", folder / "y.npy")
    >>> type(X).__name__, X.shape, y.tolist()
    ('memmap', (5, 3), [0, 1, 2, 3, 4])
    >>> tmp.cleanup()
    """
    X = _open_npy(X_path, "X_path")
    y = _open_npy(y_path, "y_path")
    if X.dtype.kind not in "biuf" or X.ndim < 2 or X.shape[0] == 0:
        raise ValueError(
            f"X_path: {str(X_path)!r} must hold a numeric array of shape "
            f"(n_samples, ...) with n_samples > 0 and at least 2 dimensions; got "
            f"shape {X.shape} and dtype {X.dtype}."
        )
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(
            f"y_path: {str(y_path)!r} must hold integer class labels of shape "
            f"(n_samples,); got shape {y.shape} and dtype {y.dtype}."
        )
    if len(y) != len(X):
        raise ValueError(
            f"X_path and y_path must have one label per sample: {str(X_path)!r} "
            f"holds {len(X)} samples, {str(y_path)!r} {len(y)} labels."
        )
    return X, y


def load_pool(directory, *, layout="NHWC", release_pages=True):
    """Open a pool converted by :func:`convert_npz_pool`, memory-mapped.

    Parameters
    ----------
    directory : str or path
        Directory holding ``images.npy`` (``uint8``, (n, height, width,
        channels)) and ``labels.npy`` (int64, (n,)).
    layout : {"NHWC", "NCHW"}, default="NHWC"
        Axis order of ``images.npy``; :func:`convert_npz_pool` keeps the
        ``"NHWC"`` order of published pools.
    release_pages : bool, default=True
        Passed to :class:`ImageArray`: keep the resident set bounded while
        streaming through the file.

    Returns
    -------
    X : ImageArray of shape (n, channels, height, width)
        The images as float32 in [0, 1], read from disk as rows are indexed.
    y : numpy.memmap of shape (n,)
        The labels.

    Raises
    ------
    FileNotFoundError
        If the directory or one of the files does not exist.
    ValueError
        As :func:`load_npy_pair`; if ``images.npy`` does not hold 4-D
        ``uint8`` images; or if the directory holds the
        ``advprune-manifest.json`` of :func:`convert_npz_pool` and the pair
        does not match it (files of different conversions, as an interrupted
        one leaves). A pair without a manifest (written by other means) is
        taken as it is.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from advprune.datasets import load_pool
    >>> tmp = tempfile.TemporaryDirectory()
    >>> folder = Path(tmp.name)
    >>> np.save(folder / "images.npy", np.zeros((4, 32, 32, 3), dtype=np.uint8))
    >>> np.save(folder / "labels.npy", np.array([0, 1, 0, 1]))
    >>> X, y = load_pool(folder)
    >>> X.shape, X.dtype
    ((4, 3, 32, 32), dtype('float32'))
    >>> tmp.cleanup()
    """
    directory = _check_path(directory, "directory")
    if not directory.is_dir():
        raise FileNotFoundError(f"directory: no such directory {str(directory)!r}.")
    check_manifest(
        directory / MANIFEST,
        [_POOL_IMAGES, _POOL_LABELS],
        remedy="convert the pool again with convert_npz_pool or `advprune convert`",
    )
    images, labels = load_npy_pair(directory / _POOL_IMAGES, directory / _POOL_LABELS)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(
            f"{str(directory / _POOL_IMAGES)!r} must hold uint8 images of shape "
            f"(n, height, width, channels); got shape {images.shape} and dtype "
            f"{images.dtype}."
        )
    return ImageArray(images, layout=layout, release_pages=release_pages), labels


# -- generated pools in the published .npz layout --------------------------------


class _NpzMember:
    """One array of an ``.npz`` archive, read row block by row block from the
    zip stream, so that an archive larger than memory can be converted."""

    def __init__(self, archive, key, npz_path):
        self.where = f"array {key!r} of {str(npz_path)!r}"
        name = f"{key}.npy"
        if name not in archive.namelist():
            stored = sorted(n[:-4] for n in archive.namelist() if n.endswith(".npy"))
            raise ValueError(
                f"npz_path: {str(npz_path)!r} has no array {key!r}; it holds {stored}."
            )
        self._file = archive.open(name)
        try:
            version = np.lib.format.read_magic(self._file)
            if version == (1, 0):
                header = np.lib.format.read_array_header_1_0(self._file)
            elif version == (2, 0):
                header = np.lib.format.read_array_header_2_0(self._file)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error) as exc:
            self._file.close()
            raise ValueError(
                f"npz_path: cannot read the header of {self.where}; the file is "
                f"truncated or corrupt ({exc})."
            ) from None
        self.shape, self.fortran_order, self.dtype = header
        if self.dtype.hasobject:
            self._file.close()
            raise ValueError(
                f"npz_path: {self.where} holds pickled Python objects, not an "
                "array of numbers; it is not unpickled."
            )

    def chunks(self, rows_per_chunk):
        """Blocks of at most ``rows_per_chunk`` rows, in order."""
        row_bytes = math.prod(self.shape[1:]) * self.dtype.itemsize
        try:
            for start in range(0, self.shape[0], rows_per_chunk):
                n = min(rows_per_chunk, self.shape[0] - start)
                data = _read_exactly(self._file, n * row_bytes)
                if len(data) < n * row_bytes:
                    raise ValueError(
                        f"npz_path: {self.where} is truncated: it ends within row "
                        f"{start + len(data) // max(row_bytes, 1)} of "
                        f"{self.shape[0]}."
                    )
                yield np.frombuffer(data, dtype=self.dtype).reshape(n, *self.shape[1:])
            # Reading past the end also makes zipfile verify the CRC.
            if self._file.read(1):
                raise ValueError(
                    f"npz_path: {self.where} holds more data than its shape "
                    f"{self.shape} declares; the file is corrupt."
                )
        except (EOFError, OSError, zipfile.BadZipFile, zlib.error) as exc:
            raise ValueError(
                f"npz_path: cannot read {self.where}; the file is truncated or "
                f"corrupt ({exc})."
            ) from None

    def close(self):
        self._file.close()


def _read_exactly(f, n_bytes):
    parts, remaining = [], n_bytes
    while remaining:
        part = f.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts) if len(parts) != 1 else parts[0]


def _counted(chunks, bar):
    for chunk in chunks:
        yield chunk
        bar.update(len(chunk))


def _labels_as_int64(chunks):
    limit = np.iinfo(np.int64).max
    for chunk in chunks:
        if chunk.dtype.kind == "u" and chunk.size and chunk.max() > limit:
            raise ValueError(f"labels above {limit} cannot be stored as int64.")
        yield chunk.astype(np.int64)


def convert_npz_pool(
    npz_path,
    out_dir,
    *,
    image_key="image",
    label_key="label",
    chunk_size=65536,
    verbose=False,
):
    """Convert a generated pool from the published ``.npz`` layout to ``.npy`` files.

    Generated CIFAR-10 pools such as those of Wang et al. (2023), "Better
    Diffusion Models Further Improve Adversarial Training", ship as one
    ``.npz`` archive with arrays ``image`` (``uint8``, (N, 32, 32, 3)) and
    ``label`` (integers, (N,)). ``np.load`` cannot memory-map the members of
    an archive and reads a whole member into memory (150 GB for 50M images);
    this converts the archive once into ``images.npy`` and ``labels.npy``
    that :func:`load_pool` opens as memory maps.

    Memory stays bounded by ``chunk_size`` rows, whatever N: each member is
    read from the zip stream block by block (compressed archives from
    ``np.savez_compressed`` are decompressed on the fly) and written with
    plain file writes. Both outputs are written to temporary files next to
    their targets, flushed to disk, and only then renamed over
    ``images.npy`` and ``labels.npy``: an error or crash before that leaves
    at most hidden temporary ``.*.tmp`` files, never a partial file under a
    final name, and the next conversion into ``out_dir`` removes those of a
    killed one. The pair is committed as one unit: before the renames,
    ``advprune-manifest.json`` records a fingerprint of both new files, so
    that a crash between the two renames leaves a pair that :func:`load_pool`
    refuses instead of new images beside old labels. Everything that can be
    checked up front (the archive's directory, both headers, matching
    lengths, free disk space) is checked before anything is written.

    Parameters
    ----------
    npz_path : str or path
        The ``.npz`` archive.
    out_dir : str or path
        Directory for ``images.npy`` and ``labels.npy``; created if missing.
        Existing files of those names are replaced.
    image_key, label_key : str, default="image", "label"
        Names of the arrays in the archive.
    chunk_size : int, default=65536
        Rows read and written at a time (65,536 images of 32x32x3 are
        200 MB).
    verbose : bool, default=False
        A progress bar over the images written.

    Returns
    -------
    images_path, labels_path : pathlib.Path
        The written files: ``images.npy`` with the images as stored
        (``uint8``, (N, height, width, channels)), ``labels.npy`` with int64
        labels; ``advprune-manifest.json`` beside them.

    Raises
    ------
    TypeError
        If a path is not a str or path, or ``chunk_size`` not an int.
    FileNotFoundError
        If ``npz_path`` does not exist.
    ValueError
        If ``chunk_size < 1``; if ``out_dir`` is an existing file; if the
        archive is not a zip file or is truncated or corrupt (including a bad
        CRC), lacks a key, holds pickled objects, or its arrays do not fit:
        images not 4-D ``uint8`` or stored in Fortran order, labels not 1-D
        integers, lengths that differ. The message names the file.
    OSError
        If the disk lacks space for the outputs (checked before writing) or
        they cannot be written.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from advprune.datasets import convert_npz_pool, load_pool
    >>> tmp = tempfile.TemporaryDirectory()
    >>> folder = Path(tmp.name)
    >>> images = np.zeros((5, 32, 32, 3), dtype=np.uint8)
    >>> np.savez(folder / "pool.npz", image=images, label=np.arange(5) % 2)
    >>> paths = convert_npz_pool(folder / "pool.npz", folder / "pool", chunk_size=2)
    >>> [p.name for p in paths]
    ['images.npy', 'labels.npy']
    >>> X, y = load_pool(folder / "pool")
    >>> X.shape, y.tolist()
    ((5, 3, 32, 32), [0, 1, 0, 1, 0])
    >>> tmp.cleanup()
    """
    npz_path = _check_input_file(npz_path, "npz_path")
    out_dir = _check_path(out_dir, "out_dir")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral):
        raise TypeError(f"chunk_size must be an int; got {chunk_size!r}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}.")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir {str(out_dir)!r} exists and is not a directory.")
    try:
        archive = zipfile.ZipFile(npz_path)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ValueError(
            f"npz_path: {str(npz_path)!r} is not a readable .npz archive; it is "
            f"truncated or corrupt ({exc})."
        ) from None
    images_path, labels_path = out_dir / _POOL_IMAGES, out_dir / _POOL_LABELS
    with contextlib.ExitStack() as stack:
        stack.enter_context(archive)
        images = _NpzMember(archive, image_key, npz_path)
        stack.callback(images.close)
        labels = _NpzMember(archive, label_key, npz_path)
        stack.callback(labels.close)
        if images.dtype != np.uint8 or len(images.shape) != 4:
            raise ValueError(
                f"npz_path: {images.where} must hold uint8 images of shape (N, "
                f"height, width, channels); got shape {images.shape} and dtype "
                f"{images.dtype}."
            )
        if images.fortran_order:
            raise ValueError(
                f"npz_path: {images.where} is stored in Fortran order and cannot "
                "be converted row by row; save it in C order."
            )
        if len(labels.shape) != 1 or labels.dtype.kind not in "iu":
            raise ValueError(
                f"npz_path: {labels.where} must hold integer labels of shape (N,); "
                f"got shape {labels.shape} and dtype {labels.dtype}."
            )
        if labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"npz_path: {str(npz_path)!r} holds {images.shape[0]} images but "
                f"{labels.shape[0]} labels."
            )
        out_dir.mkdir(parents=True, exist_ok=True)
        n_bytes = images.shape[0] * (math.prod(images.shape[1:]) + 8)
        check_free_space(out_dir, n_bytes, f"the pool of {str(npz_path)!r}")
        # Last in, so first out: both files are renamed into place, after the
        # manifest, only once both are written.
        images_temporary, labels_temporary = stack.enter_context(
            replacing_all([images_path, labels_path], manifest=out_dir / MANIFEST)
        )
        with progress_bar(
            total=images.shape[0], desc="converting", unit="image", verbose=verbose
        ) as bar:
            write_npy(
                images_temporary,
                _counted(images.chunks(chunk_size), bar),
                images.shape,
                np.dtype(np.uint8),
            )
        write_npy(
            labels_temporary,
            _labels_as_int64(labels.chunks(chunk_size)),
            labels.shape,
            np.dtype(np.int64),
        )
    return images_path, labels_path


# -- the kept rows of a pool, in the published .npz layout -----------------------


def _npz_label_dtype(npz_path, label_key):
    """The dtype the archive stores its labels in (read from the member's
    header only), so that a pruned copy keeps it."""
    with zipfile.ZipFile(npz_path) as archive:
        labels = _NpzMember(archive, label_key, npz_path)
        labels.close()
    return labels.dtype


def _write_npz_member(archive, name, rows_of_blocks, shape, dtype):
    """Stream blocks of rows into the ``.npy`` member ``name`` of a zip being
    written: memory holds one block, whatever the member's size."""
    header = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": shape,
    }
    # force_zip64: the size is not declared up front, and may pass 4 GB.
    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(member, header)
        for block in rows_of_blocks:
            member.write(np.ascontiguousarray(block, dtype=dtype).data)


def write_pruned_npz(
    file, pool_dir, npz_path, rows, *, image_key="image", label_key="label", bar=None
):
    """Write rows ``rows`` of a pool converted by :func:`convert_npz_pool` (in
    ``pool_dir``) to ``file`` in the layout of the archive it came from
    (``npz_path``: its keys, its label dtype), uncompressed like ``np.savez``.

    The images are gathered ``_GATHER_ROWS`` rows at a time from the memory
    map, with its pages released after each block, so memory stays bounded
    for a pool larger than RAM. ``bar`` is advanced by the images written.
    """
    images = np.load(pool_dir / _POOL_IMAGES, mmap_mode="r")
    labels = np.load(pool_dir / _POOL_LABELS, mmap_mode="r")
    rows = np.asarray(rows, dtype=np.int64)
    span = read_only_span(images)

    def image_blocks():
        for start in range(0, len(rows), _GATHER_ROWS):
            block = images[rows[start : start + _GATHER_ROWS]]
            release_span(span)
            yield block
            if bar is not None:
                bar.update(len(block))

    label_dtype = _npz_label_dtype(npz_path, label_key)
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED) as archive:
        _write_npz_member(
            archive,
            image_key,
            image_blocks(),
            (len(rows), *images.shape[1:]),
            np.dtype(np.uint8),
        )
        _write_npz_member(archive, label_key, [labels[rows]], (len(rows),), label_dtype)
    with open(file, "rb+") as f:
        os.fsync(f.fileno())
