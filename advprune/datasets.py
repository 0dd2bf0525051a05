"""Data: the embedded digits pool, CIFAR-10, and generated pools on disk.

The method of :mod:`advprune` targets large generated training pools added to
a small real training set. :func:`load_digits_pool` reproduces that setting
in miniature on the 8x8 digits that ship with scikit-learn, so that examples,
tests and ``advprune demo`` run anywhere without a download.

For the real setting this module reads CIFAR-10 (the official binary version
as plain bytes; the python version only through a restricted unpickler) and
generated pools in the published ``.npz`` layout, converted once into ``.npy``
files that open as memory maps. :class:`ImageArray` presents stored ``uint8``
images to the estimators as float32 in [0, 1], converting only the rows read,
so that a pool of millions of images is streamed from disk instead of loaded.
"""

import contextlib
import errno
import math
import mmap
import numbers
import os
import pickle
import secrets
import shutil
import zipfile
import zlib
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch, check_random_state
from threadpoolctl import threadpool_limits

from ._mmap import mapping_owner, read_only_span

__all__ = [
    "ImageArray",
    "convert_npz_pool",
    "load_cifar10",
    "load_cifar10_python",
    "load_digits_pool",
    "load_npy_pair",
    "load_pool",
    "save_npy_chunked",
]

_N_PCA_COMPONENTS = 20
_N_MIXTURE_COMPONENTS = 3
# Diagonal regularisation of each mixture component's covariance, in the
# PCA space of pixels scaled to [0, 1]; the smallest PCA variances are about
# 5e-3, so this keeps components of ~40 samples well conditioned without
# blurring the leading directions.
_REG_COVAR = 1e-3
_MIX_WEIGHT_RANGE = (0.2, 0.8)

_DESCR = """\
Digits with a synthetic pool
----------------------------

Real part: the 1,797 8x8 handwritten digits that ship with scikit-learn
(``sklearn.datasets.load_digits``), pixel values 0..16 divided by 16, split
into a training and a held-out test part, stratified by class.

Synthetic pool: drawn from a class-conditional generative model fitted to the
real TRAINING split only (the test split never influences the pool):

1. PCA with {n_pca} components on the flattened training images.
2. Per class, a Gaussian mixture with {n_mix} full-covariance components in
   that PCA space (regularisation {reg:g} on the diagonal).
3. Pool labels follow the class frequencies of the training split. Each
   sample is drawn from its class's mixture with every component's covariance
   multiplied by ``temperature`` (sampling "hotter" than the fitted model,
   which yields atypical, sometimes ambiguous shapes).
4. A fraction ``mix_fraction`` of the samples is replaced by an interpolation
   ``(1 - w) * z_own + w * z_partner`` in PCA space between a sample of its
   own class and a sample of a different, uniformly chosen partner class,
   with ``w ~ Uniform({w_lo}, {w_hi})``, while keeping the OWN label. With
   ``w > 0.5`` the image is closer to the partner class than to its label
   (off-class, in effect mislabelled); with ``w <= 0.5`` it is ambiguous.
   ``pool_partner`` (-1 when not interpolated) and ``pool_mix_weight`` (0
   when not interpolated) record this for every pool sample.
5. Back to pixels with the inverse PCA, clipped to [0, 1].

Like a diffusion-generated pool, it thus holds typical, atypical, ambiguous
and off-class samples. With the defaults (temperature 1.5, mix_fraction 0.2)
about 10 % of the pool is off-class by construction (interpolated with
w > 0.5). A logistic regression trained on the real training split agrees
with about 85 % of the pool labels (95 % of the plain samples, 45 % of the
interpolated ones) and classifies about 96 % of the real test split
correctly (random_state 0 to 3; measured by tests/test_datasets.py).

All images are float32 of shape (n, 1, 8, 8) in [0, 1]; labels are int64 in
0..9.
"""


def load_digits_pool(
    n_synthetic=10000,
    *,
    test_size=0.3,
    temperature=1.5,
    mix_fraction=0.2,
    random_state=0,
):
    """Load real sklearn digits and a synthetic pool generated from them.

    The real digits are split, stratified by class, into a training and a
    held-out test part. A class-conditional generative model (per-class
    Gaussian mixtures in a PCA space) is fitted to the training part only,
    and ``n_synthetic`` pool samples are drawn from it, vectorised, so any
    quantity is cheap (a million samples take a few seconds and 256 MB).
    Like a diffusion-generated pool, it contains ambiguous and off-class
    samples on purpose: it is drawn at a raised ``temperature``, and a
    fraction ``mix_fraction`` is interpolated towards another class while
    keeping its own label. See the returned ``DESCR`` for the full process.

    Parameters
    ----------
    n_synthetic : int, default=10000
        Number of synthetic pool samples, ``>= 0``.
    test_size : float, default=0.3
        Fraction of the 1,797 real digits held out as the test split, in
        ``(0, 1)``. The generative model never sees it.
    temperature : float, default=1.5
        Factor, ``> 0``, on every mixture component's covariance when
        sampling. 1 samples the fitted model; larger values give more
        atypical and ambiguous samples.
    mix_fraction : float, default=0.2
        Fraction of pool samples, in ``[0, 1]``, interpolated towards a
        sample of another class with weight ``w ~ Uniform(0.2, 0.8)`` on the
        other class, but labelled with their own class. About half of them
        (``w > 0.5``) are off-class, the rest ambiguous.
    random_state : int, RandomState instance or None, default=0
        Controls the split, the fit of the mixtures and the sampling. The
        same int gives identical arrays on every call.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the attributes:

        X_train : ndarray of shape (n_train, 1, 8, 8), dtype float32
            Real training images in [0, 1].
        y_train : ndarray of shape (n_train,), dtype int64
            Their labels, 0..9.
        X_pool : ndarray of shape (n_synthetic, 1, 8, 8), dtype float32
            Synthetic images in [0, 1].
        y_pool : ndarray of shape (n_synthetic,), dtype int64
            The class each pool sample was generated for, 0..9.
        X_test : ndarray of shape (n_test, 1, 8, 8), dtype float32
            Real held-out images in [0, 1].
        y_test : ndarray of shape (n_test,), dtype int64
            Their labels.
        pool_partner : ndarray of shape (n_synthetic,), dtype int64
            For interpolated pool samples the other class, else -1.
        pool_mix_weight : ndarray of shape (n_synthetic,), dtype float32
            Weight of the other class in the interpolation (above 0.5:
            off-class), 0 for samples that were not interpolated.
        target_names : ndarray of shape (10,), dtype int64
            The class labels 0..9.
        DESCR : str
            Description of the data and the generative process.

    Raises
    ------
    TypeError
        If ``n_synthetic`` is not an integer or a fraction is not a real
        number.
    ValueError
        If ``n_synthetic`` is negative, ``test_size`` is outside ``(0, 1)``,
        ``temperature <= 0`` or ``mix_fraction`` is outside ``[0, 1]``.

    See Also
    --------
    sklearn.datasets.load_digits : The real digits this builds on.

    Examples
    --------
    >>> from advprune.datasets import load_digits_pool
    >>> data = load_digits_pool(n_synthetic=500, random_state=0)
    >>> data.X_train.shape, data.X_pool.shape, data.X_test.shape
    ((1257, 1, 8, 8), (500, 1, 8, 8), (540, 1, 8, 8))
    >>> data.X_pool.dtype, data.y_pool.dtype
    (dtype('float32'), dtype('int64'))
    >>> bool(data.X_pool.min() >= 0.0 and data.X_pool.max() <= 1.0)
    True
    """
    if isinstance(n_synthetic, bool) or not isinstance(n_synthetic, numbers.Integral):
        raise TypeError(
            f"n_synthetic must be a non-negative integer, got {n_synthetic!r}."
        )
    if n_synthetic < 0:
        raise ValueError(
            f"n_synthetic must be a non-negative integer, got {n_synthetic}."
        )
    test_size = _check_real(test_size, "test_size")
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}.")
    temperature = _check_real(temperature, "temperature")
    if not temperature > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    mix_fraction = _check_real(mix_fraction, "mix_fraction")
    if not 0.0 <= mix_fraction <= 1.0:
        raise ValueError(f"mix_fraction must be in [0, 1], got {mix_fraction}.")
    rng = check_random_state(random_state)

    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    X_train, X_test, y_train, y_test = train_test_split(
        X,
        y,
        test_size=test_size,
        stratify=y,
        random_state=rng.randint(np.iinfo(np.int32).max),
    )

    # A Generator (seeded from random_state, so still reproducible) samples
    # normals several times faster than RandomState and directly in float32.
    generator = np.random.default_rng(rng.randint(np.iinfo(np.int32).max))
    # Every matrix product here has an inner dimension of 20 to 64, where
    # multi-threaded BLAS only adds overhead, and on a busy machine a lot.
    with threadpool_limits(limits=1, user_api="blas"):
        model = _fit_generative_model(X_train, y_train, rng)
        X_pool, y_pool, partner, mix_weight = _sample_pool(
            model, int(n_synthetic), temperature, mix_fraction, generator
        )

    image_shape = (1, 8, 8)
    return Bunch(
        X_train=np.ascontiguousarray(X_train).reshape(-1, *image_shape),
        y_train=y_train,
        X_pool=X_pool.reshape(-1, *image_shape),
        y_pool=y_pool,
        X_test=np.ascontiguousarray(X_test).reshape(-1, *image_shape),
        y_test=y_test,
        pool_partner=partner,
        pool_mix_weight=mix_weight,
        target_names=np.arange(10, dtype=np.int64),
        DESCR=_DESCR.format(
            n_pca=_N_PCA_COMPONENTS,
            n_mix=_N_MIXTURE_COMPONENTS,
            reg=_REG_COVAR,
            w_lo=_MIX_WEIGHT_RANGE[0],
            w_hi=_MIX_WEIGHT_RANGE[1],
        ),
    )


def _check_real(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}.")
    return float(value)


def _fit_generative_model(X_train, y_train, rng):
    """PCA on the training images and one Gaussian mixture per class in it."""
    pca = PCA(n_components=_N_PCA_COMPONENTS, svd_solver="full").fit(X_train)
    Z = pca.transform(X_train)
    classes, counts = np.unique(y_train, return_counts=True)
    means, cholesky, weights = [], [], []
    for c in classes:
        mixture = GaussianMixture(
            n_components=_N_MIXTURE_COMPONENTS,
            covariance_type="full",
            reg_covar=_REG_COVAR,
            random_state=rng.randint(np.iinfo(np.int32).max),
        ).fit(Z[y_train == c])
        means.append(mixture.means_)
        cholesky.append(np.linalg.cholesky(mixture.covariances_))
        weights.append(mixture.weights_)
    return {
        "classes": classes,
        "prior": counts / counts.sum(),
        "means": np.concatenate(means),
        "cholesky": np.concatenate(cholesky),
        "cum_weights": np.cumsum(np.stack(weights), axis=1),
        "components": pca.components_,
        "mean": pca.mean_,
    }


def _sample_latent(model, labels, temperature, generator):
    """float32 PCA-space samples from the mixtures of the given class indices."""
    n = labels.shape[0]
    cum_weights = model["cum_weights"]
    k = cum_weights.shape[1]
    uniform = generator.random(n)
    # The last cumulative weight may round below 1; counting the thresholds
    # below u and clipping picks component j with probability weights_[j].
    component = np.minimum((uniform[:, None] >= cum_weights[labels]).sum(1), k - 1)
    group = labels * k + component

    means = model["means"].astype(np.float32)
    factors = (np.sqrt(temperature) * model["cholesky"]).astype(np.float32)
    latent = np.empty((n, means.shape[1]), dtype=np.float32)
    order = np.argsort(group, kind="stable")
    bounds = np.cumsum(np.bincount(group, minlength=means.shape[0]))
    start = 0
    for g, stop in enumerate(bounds):
        noise = generator.standard_normal((stop - start, means.shape[1]), np.float32)
        latent[order[start:stop]] = means[g] + noise @ factors[g].T
        start = stop
    return latent


def _sample_pool(model, n, temperature, mix_fraction, generator):
    """Labels, images and interpolation record of ``n`` pool samples."""
    n_classes = model["classes"].shape[0]
    labels = generator.choice(n_classes, size=n, p=model["prior"])
    latent = _sample_latent(model, labels, temperature, generator)

    mixed = np.flatnonzero(generator.random(n) < mix_fraction)
    partner = np.full(n, -1, dtype=np.int64)
    mix_weight = np.zeros(n, dtype=np.float32)
    if mixed.size:
        # Adding 1..n_classes-1 modulo n_classes draws a partner class
        # uniformly among the classes other than the sample's own.
        shift = generator.integers(1, n_classes, size=mixed.size)
        partner_labels = (labels[mixed] + shift) % n_classes
        w = generator.uniform(*_MIX_WEIGHT_RANGE, size=mixed.size).astype(np.float32)
        partner_latent = _sample_latent(model, partner_labels, temperature, generator)
        latent[mixed] += w[:, None] * (partner_latent - latent[mixed])
        partner[mixed] = model["classes"][partner_labels]
        mix_weight[mixed] = w

    components = model["components"].astype(np.float32)
    mean = model["mean"].astype(np.float32)
    # In place, so that the float32 images are the only pool-sized
    # allocation besides the latent codes.
    images = np.matmul(latent, components, out=np.empty((n, mean.shape[0]), np.float32))
    images += mean
    np.clip(images, 0.0, 1.0, out=images)
    return images, model["classes"][labels].astype(np.int64), partner, mix_weight


# -- images stored as uint8, presented as float32 --------------------------------

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
        Index arrays and masks are read 128 rows at a time, releasing after
        each block: for scattered rows the kernel maps whole cached folios
        around every page fault (2,000 random rows of a 3 GB pool mapped
        2.2 GB at once). No effect on in-memory arrays, writable or
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
        rows = _check_rows(rows)
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
        maps whole cached folios around each page fault (measured: 2,000 random
        rows of a 3 GB pool mapped 2.2 GB at once), so a random subset read in
        one go would show most of the pool in the resident set.
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
        if self._mapping is not None:
            buffer, start, length = self._mapping
            buffer.madvise(mmap.MADV_DONTNEED, start, length)


# Rows of a scattered read mapped at once before their pages are released
# (about 1 MB of file each, see ImageArray._gather).
_GATHER_ROWS = 128


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


# -- paths ------------------------------------------------------------------------


def _check_path(path, name):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or path; got {type(path).__name__}.")
    return Path(path)


def _check_input_file(path, name):
    path = _check_path(path, name)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no such file {str(path)!r}.")
    return path


def _check_output_file(path, name):
    path = _check_path(path, name)
    if path.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a directory; expected a file path.")
    if not path.parent.is_dir():
        raise ValueError(
            f"{name} {str(path)!r} cannot be written: directory "
            f"{str(path.parent)!r} does not exist."
        )
    return path


def _check_free_space(directory, n_bytes, what):
    free = shutil.disk_usage(directory).free
    if n_bytes > free:
        raise OSError(
            errno.ENOSPC,
            f"not enough free disk space in {str(directory)!r} for {what}: "
            f"{n_bytes / 2**30:.2f} GiB needed, {free / 2**30:.2f} GiB free",
        )


# -- CIFAR-10 ---------------------------------------------------------------------

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


# What pickles of dicts of numpy arrays, lists, bytes and ints refer to: the
# array reconstructor under its numpy 1 and numpy 2 module names, the array
# and dtype types, numpy scalars, and Python 3's encoding of bytes. The
# objects are taken from numpy itself, never imported by the name in the file.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): np.empty(0).__reduce__()[0],
    ("numpy._core.multiarray", "_reconstruct"): np.empty(0).__reduce__()[0],
    ("numpy.core.multiarray", "scalar"): np.int64(0).__reduce__()[0],
    ("numpy._core.multiarray", "scalar"): np.int64(0).__reduce__()[0],
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
    loader unpickles with an allow-list: only numpy's array reconstructor,
    ``numpy.ndarray``, ``numpy.dtype``, numpy scalars and the latin-1 encoding
    of bytes can be referenced; a file that refers to anything else (e.g.
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


# -- .npy files -------------------------------------------------------------------

_POOL_IMAGES = "images.npy"
_POOL_LABELS = "labels.npy"


def _write_npy_temporary(path, chunks, shape, dtype):
    """Write the row blocks ``chunks`` as a .npy file next to ``path``.

    Returns the temporary file, flushed to disk; the caller renames it over
    ``path``. On any error the temporary file is removed.
    """
    temporary = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    header = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": shape,
    }
    try:
        with open(temporary, "xb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            rows = 0
            for chunk in chunks:
                chunk = np.asarray(chunk)
                if chunk.ndim != len(shape) or chunk.shape[1:] != shape[1:]:
                    raise ValueError(
                        f"chunks must be blocks of rows of shape (k, "
                        f"{', '.join(map(str, shape[1:]))}); got {chunk.shape}."
                    )
                if not np.can_cast(chunk.dtype, dtype, casting="safe"):
                    raise TypeError(
                        f"chunks of dtype {chunk.dtype} cannot be stored as {dtype} "
                        "without changing values."
                    )
                rows += len(chunk)
                if rows > shape[0]:
                    raise ValueError(
                        f"chunks hold more than the {shape[0]} rows of shape {shape}."
                    )
                f.write(np.ascontiguousarray(chunk, dtype=dtype).data)
            if rows != shape[0]:
                raise ValueError(
                    f"chunks hold {rows} rows; shape {shape} needs {shape[0]}."
                )
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    return temporary


def _commit(renames):
    """Rename each temporary file over its target, then make the renames
    durable; if a rename fails, the temporary files left are removed."""
    try:
        for temporary, target in renames:
            os.replace(temporary, target)
    finally:
        for temporary, _ in renames:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
    for directory in {target.parent for _, target in renames}:
        # The rename itself is durable only once the directory is synced;
        # some systems (Windows) cannot open a directory, and then the
        # rename stands as the file system keeps it.
        with contextlib.suppress(OSError):
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


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
    _check_free_space(path.parent, math.prod(shape) * dtype.itemsize, str(path))
    _commit([(_write_npy_temporary(path, chunks, shape, dtype), path)])
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
        As :func:`load_npy_pair`, or if ``images.npy`` does not hold 4-D
        ``uint8`` images.

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


def _labels_as_int64(chunks):
    limit = np.iinfo(np.int64).max
    for chunk in chunks:
        if chunk.dtype.kind == "u" and chunk.size and chunk.max() > limit:
            raise ValueError(f"labels above {limit} cannot be stored as int64.")
        yield chunk.astype(np.int64)


def convert_npz_pool(
    npz_path, out_dir, *, image_key="image", label_key="label", chunk_size=65536
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
    at most temporary ``*.tmp`` files, never a partial file under a final
    name. Everything that can be checked up front (the archive's directory,
    both headers, matching lengths, free disk space) is checked before
    anything is written.

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

    Returns
    -------
    images_path, labels_path : pathlib.Path
        The written files: ``images.npy`` with the images as stored
        (``uint8``, (N, height, width, channels)), ``labels.npy`` with int64
        labels.

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
        images_path, labels_path = out_dir / _POOL_IMAGES, out_dir / _POOL_LABELS
        n_bytes = images.shape[0] * (math.prod(images.shape[1:]) + 8)
        _check_free_space(out_dir, n_bytes, f"the pool of {str(npz_path)!r}")
        images_temporary = _write_npy_temporary(
            images_path, images.chunks(chunk_size), images.shape, np.dtype(np.uint8)
        )
        try:
            labels_temporary = _write_npy_temporary(
                labels_path,
                _labels_as_int64(labels.chunks(chunk_size)),
                labels.shape,
                np.dtype(np.int64),
            )
        except BaseException:
            images_temporary.unlink()
            raise
    _commit([(images_temporary, images_path), (labels_temporary, labels_path)])
    return images_path, labels_path
