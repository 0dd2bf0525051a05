"""The embedded digits pool: sklearn's digits and a synthetic pool drawn from a
class-conditional generative model fitted to them (:func:`load_digits_pool`)."""

import numbers

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch, check_random_state
from threadpoolctl import threadpool_limits

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
