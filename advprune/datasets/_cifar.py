"""CIFAR-10 readers: the binary version as plain bytes (:func:`load_cifar10`),
the pickled python version through a restricted unpickler
(:func:`load_cifar10_python`)."""

import pickle

import numpy as np

from ._imagearray import ImageArray
from ._paths import _check_path

_CIFAR10_SPLITS = {
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
}
# One record of the binary version: the label byte, then the 1024 red, 1024
# green and 1024 blue bytes of a 32x32 image, rows top to bottom.
_CIFAR10_RECORD = np.dtype([("label", np.uint8), ("image", np.uint8, (3, 32, 32))])
_CIFAR10_PIXELS = 3 * 32 * 32
_CIFAR10_CLASSES = 10


def _cifar10_files(path, split, folder, suffix):
    path = _check_path(path, "path")
    if not isinstance(split, str) or split not in _CIFAR10_SPLITS:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")
    if (path / folder).is_dir():
        path = path / folder
    if not path.is_dir():
        raise FileNotFoundError(
            f"path: no such directory {str(path)!r}; expected the extracted "
            f"{folder!r} folder or its parent."
        )
    files = [path / (name + suffix) for name in _CIFAR10_SPLITS[split]]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"path: {str(path)!r} lacks the CIFAR-10 {split} files {missing}."
        )
    return files


def _check_cifar10_labels(labels, file):
    bad = np.flatnonzero((labels < 0) | (labels >= _CIFAR10_CLASSES))
    if bad.size:
        raise ValueError(
            f"{str(file)!r} is not a CIFAR-10 batch: record {bad[0]} has label "
            f"{labels[bad[0]]}, outside 0..9; the file is corrupt."
        )


def load_cifar10(path, *, split="train"):
    """Load CIFAR-10 from the official binary version, without unpickling.

    Reads ``cifar-10-batches-bin`` (``cifar-10-binary.tar.gz`` from
    https://www.cs.toronto.edu/~kriz/cifar.html, extracted) as plain bytes:
    each file is a sequence of 3,073-byte records, one label byte followed by
    the red, green and blue planes of a 32x32 image. No code in the files can
    run, unlike with the pickled python version.

    Parameters
    ----------
    path : str or path
        The extracted ``cifar-10-batches-bin`` directory, or a directory that
        contains it.
    split : {"train", "test"}, default="train"
        ``"train"``: ``data_batch_1.bin`` to ``data_batch_5.bin``, 50,000
        images; ``"test"``: ``test_batch.bin``, 10,000 images.

    Returns
    -------
    X : ImageArray of shape (n, 3, 32, 32)
        The images as float32 in [0, 1], channels first, over an in-memory
        ``uint8`` array (``X.images``, 3,072 bytes per image, 150 MB for the
        training split) in the ``"NCHW"`` layout of the files, converted only
        as rows are read. Pass it to the estimators as it is;
        ``np.asarray(X)`` gives the eager float32 array (four times larger).
    y : ndarray of shape (n,), dtype int64
        Labels 0..9 (airplane, automobile, bird, cat, deer, dog, frog, horse,
        ship, truck), in file order.

    Raises
    ------
    FileNotFoundError
        If the directory or one of the split's files does not exist.
    ValueError
        If ``split`` is not ``"train"`` or ``"test"``, or a file is truncated
        or corrupt: its size is not a positive multiple of 3,073 bytes, or a
        label byte is above 9. The message names the file.

    See Also
    --------
    load_cifar10_python : The pickled python version, through a restricted
        unpickler.

    Examples
    --------
    Two records in the binary format, written to a temporary directory:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from advprune.datasets import load_cifar10
    >>> tmp = tempfile.TemporaryDirectory()
    >>> folder = Path(tmp.name) / "cifar-10-batches-bin"
    >>> folder.mkdir()
    >>> records = np.zeros((2, 3073), dtype=np.uint8)
    >>> records[:, 0] = [3, 8]          # labels
    >>> records[1, 1:1025] = 255        # red plane of the second image
    >>> records.tofile(folder / "test_batch.bin")
    >>> X, y = load_cifar10(folder.parent, split="test")
    >>> X.shape, y.tolist()
    ((2, 3, 32, 32), [3, 8])
    >>> float(X[1, 0].min()), float(X[1, 1].max())
    (1.0, 0.0)
    >>> tmp.cleanup()
    """
    files = _cifar10_files(path, split, "cifar-10-batches-bin", ".bin")
    counts = []
    for file in files:
        size = file.stat().st_size
        if size == 0 or size % _CIFAR10_RECORD.itemsize:
            raise ValueError(
                f"{str(file)!r} is not a CIFAR-10 binary batch: its size, {size} "
                f"bytes, is not a positive multiple of the record size "
                f"{_CIFAR10_RECORD.itemsize} (1 label byte + 3072 pixel bytes); "
                "the file is truncated or corrupt."
            )
        counts.append(size // _CIFAR10_RECORD.itemsize)
    images = np.empty((sum(counts), 3, 32, 32), dtype=np.uint8)
    labels = np.empty(sum(counts), dtype=np.int64)
    start = 0
    for file, count in zip(files, counts, strict=True):
        records = np.fromfile(file, dtype=_CIFAR10_RECORD, count=count)
        _check_cifar10_labels(records["label"], file)
        images[start : start + count] = records["image"]
        labels[start : start + count] = records["label"]
        start += count
    return ImageArray(images, layout="NCHW"), labels


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""


def _latin1_encode(text, encoding="latin1"):
    # Python 3 pickles bytes under protocol 2 as _codecs.encode(text, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _RefusedGlobal("_codecs.encode with arguments other than (str, 'latin1')")
    return text.encode("latin1")


# What pickles of dicts of numpy arrays, lists, bytes and ints refer to, in
# every pickle protocol (0 to 5): the array reconstructors under their numpy 1
# and numpy 2 module names (``_reconstruct`` up to protocol 4, ``_frombuffer``,
# which makes an array of a buffer, from protocol 5), the array and dtype
# types, numpy scalars, and Python 3's encoding of bytes (protocols 0 to 2).
# The objects are taken from numpy itself, never imported by the name in the
# file.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]
_SCALAR = np.int64(0).__reduce__()[0]
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers; refuses every other global.

    Any callable a pickle can invoke is obtained through ``find_class``, so an
    allow-list here means no other code runs, whatever the file contains.
    """

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid):
        raise _RefusedGlobal(f"persistent id {pid!r}")


def _batch_entry(batch, key, file):
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise ValueError(
        f"{str(file)!r} is not a CIFAR-10 python batch: no {key!r} entry; it "
        f"holds {sorted(map(repr, batch))}."
    )


def _load_python_batch(file):
    try:
        with open(file, "rb") as f:
            batch = _RestrictedUnpickler(f, encoding="bytes").load()
    except _RefusedGlobal as exc:
        raise ValueError(
            f"refused to unpickle {str(file)!r}: it asks for {exc}, but a "
            "CIFAR-10 python batch holds only numpy arrays, lists, bytes and "
            "ints. Nothing from the file was run; it is corrupt or malicious."
        ) from None
    except Exception as exc:
        # A damaged pickle fails in many ways (EOFError, UnpicklingError,
        # KeyError, UnicodeDecodeError, ...); all mean the same to the user.
        raise ValueError(
            f"cannot read {str(file)!r} as a CIFAR-10 python batch; the file is "
            f"truncated or corrupt ({type(exc).__name__}: {exc})."
        ) from None
    if not isinstance(batch, dict):
        raise ValueError(
            f"{str(file)!r} is not a CIFAR-10 python batch: it holds a "
            f"{type(batch).__name__}, not a dict."
        )
    data = _batch_entry(batch, "data", file)
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != _CIFAR10_PIXELS
    ):
        raise ValueError(
            f"{str(file)!r} is not a CIFAR-10 python batch: 'data' must be a uint8 "
            f"array of shape (n, 3072); got {type(data).__name__} with shape "
            f"{getattr(data, 'shape', None)} and dtype {getattr(data, 'dtype', None)}."
        )
    labels = np.asarray(_batch_entry(batch, "labels", file))
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise ValueError(
            f"{str(file)!r} is not a CIFAR-10 python batch: 'labels' must hold "
            f"{len(data)} integers, one per image; got shape {labels.shape} and "
            f"dtype {labels.dtype}."
        )
    _check_cifar10_labels(labels, file)
    return data, labels


def load_cifar10_python(path, *, split="train"):
    """Load CIFAR-10 from the pickled python version, with a restricted unpickler.

    The python version (``cifar-10-python.tar.gz``) stores each batch as a
    pickle, and unpickling an untrusted file can run arbitrary code. This
    loader unpickles with an allow-list: only numpy's array reconstructors
    (those of every pickle protocol, 0 to 5), ``numpy.ndarray``,
    ``numpy.dtype``, numpy scalars and the latin-1 encoding of bytes can be
    referenced; a file that refers to anything else (e.g.
    ``os.system``) is refused before it can run, with a ``ValueError``. The
    result is then checked to be a batch: a dict with a ``uint8`` ``data``
    array of shape (n, 3072) and n ``labels`` in 0..9. Prefer
    :func:`load_cifar10` with the binary version, which needs no unpickling.

    Parameters
    ----------
    path : str or path
        The extracted ``cifar-10-batches-py`` directory, or a directory that
        contains it.
    split : {"train", "test"}, default="train"
        ``"train"``: ``data_batch_1`` to ``data_batch_5``; ``"test"``:
        ``test_batch``.

    Returns
    -------
    X : ImageArray of shape (n, 3, 32, 32)
        Images as float32 in [0, 1], over an in-memory uint8 array in the
        ``"NCHW"`` layout, as :func:`load_cifar10` returns.
    y : ndarray of shape (n,), dtype int64
        Labels 0..9.

    Raises
    ------
    FileNotFoundError
        If the directory or one of the split's files does not exist.
    ValueError
        If ``split`` is invalid; if a file refers to a global outside the
        allow-list (nothing from it is run); if it is truncated or corrupt; or
        if it does not hold a CIFAR-10 batch. The message names the file.

    See Also
    --------
    load_cifar10 : The binary version, read without unpickling.

    Examples
    --------
    >>> import pickle, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from advprune.datasets import load_cifar10_python
    >>> tmp = tempfile.TemporaryDirectory()
    >>> folder = Path(tmp.name) / "cifar-10-batches-py"
    >>> folder.mkdir()
    >>> batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 7],
    ...          b"batch_label": b"testing batch 1 of 1",
    ...          b"filenames": [b"a.png", b"b.png"]}
    >>> with open(folder / "test_batch", "wb") as f:
    ...     pickle.dump(batch, f, protocol=2)
    >>> X, y = load_cifar10_python(folder, split="test")
    >>> X.shape, y.tolist()
    ((2, 3, 32, 32), [1, 7])
    >>> tmp.cleanup()
    """
    files = _cifar10_files(path, split, "cifar-10-batches-py", "")
    batches = [_load_python_batch(file) for file in files]
    images = np.concatenate([data for data, _ in batches]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([labels for _, labels in batches]).astype(np.int64)
    return ImageArray(images, layout="NCHW"), labels
