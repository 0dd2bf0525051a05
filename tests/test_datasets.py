"""Tests for advprune.datasets.load_digits_pool."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from advprune.datasets import load_digits_pool

N_POOL = 10000


@pytest.fixture(scope="module")
def data():
    return load_digits_pool(n_synthetic=N_POOL, random_state=0)


@pytest.fixture(scope="module")
def real_classifier(data):
    """Logistic regression on flattened pixels of the real training split."""
    return _fit_logistic_regression(data.X_train, data.y_train)


def _flat(X):
    return X.reshape(X.shape[0], -1)


def _fit_logistic_regression(X, y):
    # On 64 features multi-threaded BLAS gains nothing, and on a machine
    # busy with other test processes it made this fit about 60x slower.
    with threadpool_limits(limits=1, user_api="blas"):
        return LogisticRegression(max_iter=3000).fit(_flat(X), y)


def test_shapes_dtypes_ranges(data):
    n_real = 1797
    assert data.X_train.shape[0] + data.X_test.shape[0] == n_real
    assert data.X_test.shape[0] == 540  # ceil(0.3 * 1797)
    for split in ["train", "pool", "test"]:
        X, y = data[f"X_{split}"], data[f"y_{split}"]
        assert X.ndim == 4 and X.shape[1:] == (1, 8, 8)
        assert X.dtype == np.float32
        assert X.flags.c_contiguous
        assert y.shape == (X.shape[0],)
        assert y.dtype == np.int64
        assert X.min() >= 0.0 and X.max() <= 1.0
        assert set(np.unique(y)) == set(range(10))
    assert data.X_pool.shape[0] == N_POOL
    assert data.pool_partner.shape == (N_POOL,) and data.pool_partner.dtype == np.int64
    assert data.pool_mix_weight.shape == (N_POOL,)
    assert data.pool_mix_weight.dtype == np.float32
    np.testing.assert_array_equal(data.target_names, np.arange(10))
    assert "Gaussian mixture" in data.DESCR


def test_real_part_is_sklearn_digits_scaled(data):
    digits = load_digits()
    real = np.concatenate([_flat(data.X_train), _flat(data.X_test)])
    labels = np.concatenate([data.y_train, data.y_test])
    order = np.lexsort(real.T)
    ref = (digits.data / 16.0).astype(np.float32)
    ref_order = np.lexsort(ref.T)
    # The digits hold no duplicate images, so train and test partition them.
    np.testing.assert_array_equal(real[order], ref[ref_order])
    np.testing.assert_array_equal(labels[order], digits.target[ref_order])


def test_split_is_stratified(data):
    train_share = np.bincount(data.y_train) / data.y_train.size
    test_share = np.bincount(data.y_test) / data.y_test.size
    assert np.abs(train_share - test_share).max() < 0.01


def test_pool_classes_follow_training_frequencies(data):
    share = np.bincount(data.y_pool, minlength=10) / N_POOL
    train_share = np.bincount(data.y_train) / data.y_train.size
    # Binomial standard deviation at p = 0.1, n = 10000 is 0.003.
    assert np.abs(share - train_share).max() < 0.015


def test_pool_is_not_a_copy_of_real_images(data):
    pool = _flat(data.X_pool[:1000]).astype(np.float64)
    for real in [data.X_train, data.X_test]:
        real = _flat(real).astype(np.float64)
        d2 = (pool**2).sum(1)[:, None] - 2 * pool @ real.T + (real**2).sum(1)
        nearest = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
        # Distinct real digits are at least ~0.5 apart in this scale; a copy
        # would be at 0.
        assert nearest.min() > 0.05
    # Nor are pool samples copies of each other.
    assert np.unique(_flat(data.X_pool), axis=0).shape[0] == N_POOL


def test_deterministic(data):
    again = load_digits_pool(n_synthetic=N_POOL, random_state=0)
    for key in ["X_train", "y_train", "X_pool", "y_pool", "X_test", "y_test"]:
        np.testing.assert_array_equal(again[key], data[key])
    np.testing.assert_array_equal(again.pool_partner, data.pool_partner)
    np.testing.assert_array_equal(again.pool_mix_weight, data.pool_mix_weight)
    other = load_digits_pool(n_synthetic=N_POOL, random_state=1)
    assert not np.array_equal(other.X_pool, data.X_pool)
    assert not np.array_equal(other.y_train, data.y_train)


def test_random_state_instance_accepted():
    a = load_digits_pool(50, random_state=np.random.RandomState(3))
    b = load_digits_pool(50, random_state=np.random.RandomState(3))
    np.testing.assert_array_equal(a.X_pool, b.X_pool)


def test_pool_label_agreement_with_real_classifier(data, real_classifier):
    # Measured with random_state 0..3: test accuracy 0.956-0.967, pool
    # agreement 0.851-0.863 (0.95 on plain samples, 0.45 on interpolated).
    test_accuracy = real_classifier.score(_flat(data.X_test), data.y_test)
    assert test_accuracy > 0.93
    predicted = real_classifier.predict(_flat(data.X_pool))
    agree = predicted == data.y_pool
    assert 0.80 < agree.mean() < 0.91
    mixed = data.pool_partner >= 0
    assert agree[~mixed].mean() > 0.92
    off_class = data.pool_mix_weight > 0.6
    assert agree[off_class].mean() < 0.2
    # Those samples look like the partner class, not like noise.
    partner_hit = predicted[off_class] == data.pool_partner[off_class]
    assert partner_hit.mean() > 0.7


def test_knobs_control_ambiguity():
    clean = load_digits_pool(5000, temperature=1.0, mix_fraction=0.0, random_state=0)
    assert (clean.pool_partner == -1).all()
    assert (clean.pool_mix_weight == 0).all()
    clf = _fit_logistic_regression(clean.X_train, clean.y_train)
    clean_agree = (clf.predict(_flat(clean.X_pool)) == clean.y_pool).mean()
    noisy = load_digits_pool(5000, temperature=2.0, mix_fraction=0.5, random_state=0)
    noisy_agree = (clf.predict(_flat(noisy.X_pool)) == noisy.y_pool).mean()
    # Same split (same random_state), so the same classifier applies.
    np.testing.assert_array_equal(clean.X_train, noisy.X_train)
    assert clean_agree > 0.95
    assert noisy_agree < clean_agree - 0.15


def test_interpolation_record(data):
    mixed = data.pool_partner >= 0
    # Binomial(10000, 0.2): standard deviation 0.004.
    assert abs(mixed.mean() - 0.2) < 0.015
    assert (data.pool_partner[mixed] != data.y_pool[mixed]).all()
    assert set(np.unique(data.pool_partner[mixed])) == set(range(10))
    w = data.pool_mix_weight
    assert (w[~mixed] == 0).all()
    assert w[mixed].min() >= 0.2 and w[mixed].max() <= 0.8
    assert abs(np.median(w[mixed]) - 0.5) < 0.03


def test_generative_model_sees_training_split_only(monkeypatch):
    from advprune.datasets import _digits as module

    seen = {"pca": [], "mixture_rows": 0}

    class RecordingPCA(module.PCA):
        def fit(self, X, y=None):
            seen["pca"].append(np.asarray(X).copy())
            return super().fit(X, y)

    class RecordingMixture(module.GaussianMixture):
        def fit(self, X, y=None):
            seen["mixture_rows"] += len(X)
            return super().fit(X, y)

    monkeypatch.setattr(module, "PCA", RecordingPCA)
    monkeypatch.setattr(module, "GaussianMixture", RecordingMixture)
    data = module.load_digits_pool(100, test_size=0.5, random_state=0)
    assert data.X_test.shape[0] == 899
    (pca_input,) = seen["pca"]
    np.testing.assert_array_equal(pca_input, _flat(data.X_train))
    assert seen["mixture_rows"] == data.X_train.shape[0]


def test_pool_never_reproduces_held_out_images():
    data = load_digits_pool(2000, test_size=0.5, random_state=0)
    pool = _flat(data.X_pool).astype(np.float64)
    test = _flat(data.X_test).astype(np.float64)
    d2 = (pool**2).sum(1)[:, None] - 2 * pool @ test.T + (test**2).sum(1)
    assert np.sqrt(np.maximum(d2.min(), 0.0)) > 0.05


@pytest.mark.parametrize("n", [0, 1, 37])
def test_small_pools(n):
    data = load_digits_pool(n, random_state=0)
    assert data.X_pool.shape == (n, 1, 8, 8)
    assert data.y_pool.shape == (n,)
    assert data.pool_partner.shape == (n,)


def test_large_pool():
    data = load_digits_pool(200_000, random_state=0)
    assert data.X_pool.shape == (200_000, 1, 8, 8)
    assert data.X_pool.min() >= 0.0 and data.X_pool.max() <= 1.0
    share = np.bincount(data.y_pool, minlength=10) / 200_000
    assert np.abs(share - 0.1).max() < 0.01


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"n_synthetic": -1}, ValueError, "n_synthetic"),
        ({"n_synthetic": 10.0}, TypeError, "n_synthetic"),
        ({"n_synthetic": True}, TypeError, "n_synthetic"),
        ({"test_size": 0.0}, ValueError, "test_size"),
        ({"test_size": 1.0}, ValueError, "test_size"),
        ({"test_size": "0.3"}, TypeError, "test_size"),
        ({"temperature": 0.0}, ValueError, "temperature"),
        ({"temperature": float("nan")}, ValueError, "temperature"),
        ({"mix_fraction": 1.5}, ValueError, "mix_fraction"),
        ({"mix_fraction": -0.1}, ValueError, "mix_fraction"),
        ({"mix_fraction": None}, TypeError, "mix_fraction"),
    ],
)
def test_bad_parameters(kwargs, error, name):
    with pytest.raises(error, match=name):
        load_digits_pool(**kwargs)


def test_tabular_pool_layout_reproducibility_and_off_class_flag():
    from advprune.datasets import load_tabular_pool

    a = load_tabular_pool(3000, random_state=1)
    b = load_tabular_pool(3000, random_state=1)
    for key in ("X_train", "y_train", "X_pool", "y_pool", "X_test", "y_test"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a.X_pool.dtype == np.float32 and a.y_pool.dtype == np.int64
    assert a.X_pool.shape == (3000, 32) and a.X_train.shape == (1200, 32)
    assert a.X_pool.min() >= 0 and a.X_pool.max() <= 1
    assert set(np.unique(a.y_pool)) == set(range(8))
    # Off-class: interpolated past half way, or flipped; about 10% + 10% / 2.
    np.testing.assert_array_equal(
        a.offclass, (a.pool_mix_weight > 0.5) | a.pool_flipped
    )
    assert 0.12 < a.offclass.mean() < 0.28
    # A classifier of the real training split agrees less with off-class labels.
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=2000).fit(a.X_train, a.y_train)
    agree = clf.predict(a.X_pool) == a.y_pool
    assert agree[~a.offclass].mean() > agree[a.offclass].mean() + 0.3
    assert clf.score(a.X_test, a.y_test) > 0.7


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"n_synthetic": -1}, ValueError),
        ({"n_classes": 1}, ValueError),
        ({"n_train": 2.5}, TypeError),
        ({"class_sep": 0.0}, ValueError),
        ({"shift": -0.1}, ValueError),
        ({"flip_fraction": 1.5}, ValueError),
        ({"mix_fraction": "a"}, TypeError),
    ],
)
def test_tabular_pool_refuses_bad_parameters(params, error):
    from advprune.datasets import load_tabular_pool

    name = next(iter(params))
    with pytest.raises(error, match=name):
        load_tabular_pool(**{"n_synthetic": 10, **params})
