"""A tabular pool, as unlike the digits as a cheap generator can make it."""

import numbers

import numpy as np
from sklearn.utils import Bunch

from ._digits import _check_real

__all__ = ["load_tabular_pool"]

_MIX_WEIGHT_RANGE = (0.2, 0.8)

_DESCR = """\
Tabular data with a synthetic pool
----------------------------------

Real part: ``n_classes`` classes in the spirit of
``sklearn.datasets.make_classification``: each class a mixture of
``clusters_per_class`` Gaussian clusters of their own random full covariance
in an ``n_informative``-dimensional space (class centres drawn at scale
``class_sep``, cluster centres scattered around them), plus ``n_redundant``
random linear combinations of the informative features and ``n_noise`` pure
noise features, in a random column order. The real training and test splits
are drawn from it.

Synthetic pool: drawn from an imperfect copy of that distribution, the way a
generative model's samples differ from its training data:

1. hotter: every cluster covariance is multiplied by ``temperature``;
2. biased: every cluster centre is moved by Gaussian noise of scale
   ``shift * class_sep``, and the cluster weights are drawn again (modes
   over- and under-represented);
3. ambiguous and off-class: a fraction ``mix_fraction`` of the samples is
   interpolated towards a sample of another class with weight
   ``w ~ Uniform(0.2, 0.8)`` and keeps its own label (``w > 0.5``: closer to
   the other class);
4. mislabelled: a fraction ``flip_fraction`` of the samples is drawn from
   another class than its label.

``offclass`` flags the pool samples that look like another class than their
label (interpolated with ``w > 0.5``, or flipped). Every feature is mapped into
[0, 1] by one affine map fitted on the real training split (mean - 3 standard
deviations to 0, mean + 3 to 1) and clipped, so that an L-infinity budget is in
the same units for every feature. The default model of such data is an MLP.
"""


def load_tabular_pool(
    n_synthetic=2000,
    *,
    n_train=1200,
    n_test=600,
    n_classes=8,
    n_informative=12,
    n_redundant=8,
    n_noise=12,
    clusters_per_class=3,
    class_sep=1.6,
    temperature=1.6,
    shift=0.25,
    mix_fraction=0.2,
    flip_fraction=0.1,
    random_state=0,
):
    """Load tabular real training and test splits and an imperfect synthetic pool.

    The second benchmark data set beside :func:`load_digits_pool`: flat
    features instead of images, eight classes of several modes each instead of
    ten digits, and a pool whose generator is off in four ways (hotter,
    biased modes, interpolations towards other classes, label flips). See the
    returned ``DESCR`` for the process. Generated with numpy, vectorised (a
    million pool rows take seconds), nothing downloaded.

    Parameters
    ----------
    n_synthetic : int, default=2000
        Pool size, ``>= 0``.
    n_train, n_test : int, default=1200, 600
        Sizes of the real training and test splits, ``>= 1``.
    n_classes : int, default=8
        Number of classes, ``>= 2``.
    n_informative, n_redundant, n_noise : int, default=12, 8, 12
        Feature counts (``n_informative >= 1``, the others ``>= 0``);
        ``n_features = n_informative + n_redundant + n_noise``.
    clusters_per_class : int, default=3
        Gaussian clusters per class, ``>= 1``.
    class_sep : float, default=1.6
        Scale of the class centres, ``> 0`` (larger: easier).
    temperature : float, default=1.6
        Factor on the pool generator's covariances, ``> 0``.
    shift : float, default=0.25
        Scale of the pool generator's error on the cluster centres, relative
        to ``class_sep``, ``>= 0``.
    mix_fraction : float, default=0.2
        Fraction of the pool, in ``[0, 1]``, interpolated towards another
        class with its label kept.
    flip_fraction : float, default=0.1
        Fraction of the pool, in ``[0, 1]``, drawn from another class than its
        label.
    random_state : int or None, default=0
        Seed of numpy's generator; the same int gives identical arrays.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``X_train``, ``X_pool``, ``X_test``: float32 features in [0, 1] of
        shape (n, n_features); ``y_train``, ``y_pool``, ``y_test``: int64
        labels; ``offclass``: bool, the pool samples that look like another
        class than their label; ``pool_mix_weight`` (float32, 0 where not
        interpolated), ``pool_partner`` (int64, the other class or -1),
        ``pool_flipped`` (bool); ``target_names`` and ``DESCR``.

    Raises
    ------
    TypeError
        If a count is not an integer or a scale not a real number.
    ValueError
        If a count or scale is outside its range.

    See Also
    --------
    load_digits_pool : The image pool of the same layout.

    Examples
    --------
    >>> from advprune.datasets import load_tabular_pool
    >>> data = load_tabular_pool(500, random_state=0)
    >>> data.X_train.shape, data.X_pool.shape, data.X_test.shape
    ((1200, 32), (500, 32), (600, 32))
    >>> bool(data.X_pool.min() >= 0 and data.X_pool.max() <= 1)
    True
    >>> bool(0.1 < data.offclass.mean() < 0.3)
    True
    """
    counts = {
        "n_synthetic": (n_synthetic, 0),
        "n_train": (n_train, 1),
        "n_test": (n_test, 1),
        "n_classes": (n_classes, 2),
        "n_informative": (n_informative, 1),
        "n_redundant": (n_redundant, 0),
        "n_noise": (n_noise, 0),
        "clusters_per_class": (clusters_per_class, 1),
    }
    for name, (value, low) in counts.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an integer, got {value!r}.")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}.")
    class_sep = _check_real(class_sep, "class_sep")
    temperature = _check_real(temperature, "temperature")
    shift = _check_real(shift, "shift")
    for name, value in {"class_sep": class_sep, "temperature": temperature}.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}.")
    if not shift >= 0:
        raise ValueError(f"shift must be >= 0, got {shift}.")
    fractions = {"mix_fraction": mix_fraction, "flip_fraction": flip_fraction}
    for name, value in fractions.items():
        value = _check_real(value, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}.")

    rng = np.random.default_rng(random_state)
    d = n_informative
    n_clusters = n_classes * clusters_per_class

    # The real distribution.
    class_centres = rng.standard_normal((n_classes, d)) * class_sep
    cluster_means = np.repeat(class_centres, clusters_per_class, axis=0) + (
        rng.standard_normal((n_clusters, d)) * 0.6 * class_sep
    )
    factors = _random_covariance_factors(rng, n_clusters, d)
    weights = rng.dirichlet(np.full(clusters_per_class, 5.0), size=n_classes)
    prior = rng.dirichlet(np.full(n_classes, 20.0))
    redundant_map = rng.standard_normal((d, n_redundant)) / np.sqrt(d)
    permutation = rng.permutation(d + n_redundant + n_noise)

    def features(informative):
        parts = [
            informative,
            informative @ redundant_map,
            rng.standard_normal((informative.shape[0], n_noise)),
        ]
        return np.concatenate(parts, axis=1)[:, permutation]

    def real(n):
        labels = rng.choice(n_classes, size=n, p=prior)
        cluster = _draw_cluster(rng, labels, np.cumsum(weights, axis=1))
        return features(_sample_clusters(rng, cluster_means, factors, cluster)), labels

    X_train, y_train = real(n_train)
    X_test, y_test = real(n_test)

    # The imperfect generator of the pool.
    pool_means = cluster_means + rng.standard_normal(cluster_means.shape) * (
        shift * class_sep
    )
    pool_weights = rng.dirichlet(np.full(clusters_per_class, 1.0), size=n_classes)
    pool_cum = np.cumsum(pool_weights, axis=1)
    y_pool = rng.choice(n_classes, size=n_synthetic, p=prior)
    flipped = rng.random(n_synthetic) < flip_fraction
    source = y_pool.copy()
    source[flipped] = (
        y_pool[flipped] + rng.integers(1, n_classes, size=flipped.sum())
    ) % n_classes
    latent = _sample_clusters(
        rng, pool_means, factors, _draw_cluster(rng, source, pool_cum), temperature
    )
    mixed = np.flatnonzero((rng.random(n_synthetic) < mix_fraction) & ~flipped)
    partner = np.full(n_synthetic, -1, dtype=np.int64)
    mix_weight = np.zeros(n_synthetic, dtype=np.float32)
    if mixed.size:
        partner_labels = (
            y_pool[mixed] + rng.integers(1, n_classes, size=mixed.size)
        ) % n_classes
        w = rng.uniform(*_MIX_WEIGHT_RANGE, size=mixed.size)
        partner_latent = _sample_clusters(
            rng,
            pool_means,
            factors,
            _draw_cluster(rng, partner_labels, pool_cum),
            temperature,
        )
        latent[mixed] += w[:, None] * (partner_latent - latent[mixed])
        partner[mixed] = partner_labels
        mix_weight[mixed] = w
    X_pool = features(latent)

    mean, std = X_train.mean(axis=0), X_train.std(axis=0)

    def unit(X):
        return np.clip(0.5 + (X - mean) / (6 * std), 0.0, 1.0).astype(np.float32)

    return Bunch(
        X_train=unit(X_train),
        y_train=y_train.astype(np.int64),
        X_pool=unit(X_pool),
        y_pool=y_pool.astype(np.int64),
        X_test=unit(X_test),
        y_test=y_test.astype(np.int64),
        offclass=(mix_weight > 0.5) | flipped,
        pool_mix_weight=mix_weight,
        pool_partner=partner,
        pool_flipped=flipped,
        target_names=np.arange(n_classes, dtype=np.int64),
        DESCR=_DESCR,
    )


def _random_covariance_factors(rng, n_groups, dim, scale_range=(0.3, 1.0)):
    """One (dim, dim) factor per group: a random rotation times random axis
    scales, so that covariances are anisotropic and correlated."""
    factors = np.empty((n_groups, dim, dim))
    for group in range(n_groups):
        rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        factors[group] = rotation * rng.uniform(*scale_range, size=dim)
    return factors


def _sample_clusters(rng, means, factors, cluster, temperature=1.0):
    """Gaussian samples of the given cluster of each row, vectorised per cluster."""
    n, dim = cluster.shape[0], means.shape[1]
    out = np.empty((n, dim))
    noise = rng.standard_normal((n, dim))
    for group in np.unique(cluster):
        rows = np.flatnonzero(cluster == group)
        out[rows] = means[group] + np.sqrt(temperature) * noise[rows] @ factors[group].T
    return out


def _draw_cluster(rng, labels, cum_weights):
    """A cluster of its class for every label, by the class's cluster weights."""
    k = cum_weights.shape[1]
    u = rng.random(labels.shape[0])
    component = np.minimum((u[:, None] >= cum_weights[labels]).sum(1), k - 1)
    return labels * k + component
