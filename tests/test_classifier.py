"""Tests of advprune.AdversarialClassifier."""

import copy

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.utils.estimator_checks import parametrize_with_checks

import advprune.training._loop
from advprune import AdversarialClassifier
from advprune.models import MLP, SmallCNN


def _blobs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, 2)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 1).astype(int)
    return X, y


# Few epochs and one attack step keep the whole check suite fast; the checks
# feed standardised data, hence unbounded features.
@parametrize_with_checks(
    [
        AdversarialClassifier(
            eps=0.05,
            attack_steps=1,
            epochs=3,
            batch_size=64,
            bounds=None,
            device="cpu",
            random_state=0,
        )
    ]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_learns_digits_images_and_accepts_flat_inputs():
    digits = load_digits()
    X = (digits.images[:600] / 16).astype(np.float32)[:, None]
    y = digits.target[:600]
    clf = AdversarialClassifier(
        eps=0.05, attack_steps=2, epochs=4, batch_size=32, device="cpu", random_state=0
    ).fit(X[:400], y[:400])
    assert isinstance(clf.module_, SmallCNN)
    assert not clf.module_.training
    assert clf.sample_shape_ == (1, 8, 8)
    assert clf.n_features_in_ == 64
    assert len(clf.history_) == 4
    assert clf.score(X[400:], y[400:]) > 0.8
    np.testing.assert_array_equal(
        clf.predict(X[400:]), clf.predict(X[400:].reshape(200, 64))
    )
    proba = clf.predict_proba(X[400:])
    assert proba.shape == (200, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="shape"):
        clf.predict(X[400:].reshape(200, 1, 4, 16))
    with pytest.raises(ValueError, match="63 features"):
        clf.predict(X[400:].reshape(200, 64)[:, :63])


def test_same_random_state_same_predictions_and_global_rng_untouched():
    X, y = _blobs()
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    first = AdversarialClassifier(eps=0.05, epochs=2, device="cpu", random_state=7)
    proba = first.fit(X, y).predict_proba(X)
    assert torch.equal(torch.rand(3), expected_draw)
    second = AdversarialClassifier(eps=0.05, epochs=2, device="cpu", random_state=7)
    np.testing.assert_array_equal(second.fit(X, y).predict_proba(X), proba)
    other = AdversarialClassifier(eps=0.05, epochs=2, device="cpu", random_state=8)
    assert not np.array_equal(other.fit(X, y).predict_proba(X), proba)


def test_template_model_is_copied_not_modified():
    X, y = _blobs()
    template = MLP(2, 2, hidden_sizes=(8,))
    before = copy.deepcopy(template.state_dict())
    clf = AdversarialClassifier(
        template, eps=0.05, epochs=2, device="cpu", random_state=0
    ).fit(X, y)
    assert clf.module_ is not template
    for name, tensor in template.state_dict().items():
        assert torch.equal(tensor, before[name])
    assert not all(
        torch.equal(tensor, before[name])
        for name, tensor in clf.module_.state_dict().items()
    )


@pytest.mark.parametrize("method", ["pgd", "trades", "standard"])
def test_methods_train(method):
    X, y = _blobs(n=200)
    clf = AdversarialClassifier(
        method=method, eps=0.02, epochs=8, batch_size=32, device="cpu", random_state=0
    ).fit(X, y)
    assert clf.score(X, y) > 0.85


def test_labels_of_any_type_and_inputs_untouched():
    X, y = _blobs()
    X64 = X.astype(np.float64)
    X_before = X64.copy()
    labels = np.where(y == 1, "upper", "lower")
    clf = AdversarialClassifier(eps=0.05, epochs=2, device="cpu", random_state=0)
    clf.fit(X64, labels)
    np.testing.assert_array_equal(X64, X_before)
    assert clf.classes_.tolist() == ["lower", "upper"]
    assert set(clf.predict(X64)) <= {"lower", "upper"}


@pytest.mark.parametrize("bounds", [(-1, 2), None])
def test_attack_parameters_reach_the_training_attack(monkeypatch, bounds):
    calls = []

    def recording_pgd(model, x, y, eps, **kwargs):
        calls.append({"eps": eps, **kwargs})
        return x.detach().clone()

    monkeypatch.setattr(advprune.training._loop, "pgd", recording_pgd)
    X, y = _blobs()
    AdversarialClassifier(
        eps=0.3,
        norm="l2",
        attack_steps=4,
        step_size=0.2,
        bounds=bounds,
        epochs=1,
        batch_size=60,
        device="cpu",
        random_state=0,
    ).fit(X, y)
    assert len(calls) == 2  # one attack per batch
    expected = None if bounds is None else (-1.0, 2.0)
    for call in calls:
        assert (call["eps"], call["norm"], call["steps"], call["step_size"]) == (
            0.3,
            "l2",
            4,
            0.2,
        )
        assert call["bounds"] == expected


def test_invalid_parameters_and_data():
    X, y = _blobs()
    with pytest.raises(ValueError, match="method"):
        AdversarialClassifier(method="fgsm").fit(X, y)
    with pytest.raises(ValueError, match="epochs"):
        AdversarialClassifier(epochs=0).fit(X, y)
    with pytest.raises(ValueError, match="model"):
        AdversarialClassifier(model="resnet").fit(X, y)
    for bounds in [(1.0, 0.0), (0.0, np.inf)]:
        with pytest.raises(ValueError, match="bounds"):
            AdversarialClassifier(bounds=bounds).fit(X, y)
    with pytest.raises(TypeError, match="bounds"):
        AdversarialClassifier(bounds=(0.0,)).fit(X, y)
    with pytest.raises(ValueError, match="one class"):
        AdversarialClassifier().fit(X, np.zeros(len(X), int))
    with pytest.raises(ValueError, match="NaN"):
        AdversarialClassifier().fit(np.full_like(X, np.nan), y)


def test_fits_and_predicts_on_an_image_array():
    from advprune.datasets import ImageArray

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8)
    y = np.arange(40) % 2
    X = ImageArray(images, layout="NHWC")
    clf = AdversarialClassifier(
        epochs=1, attack_steps=1, batch_size=16, device="cpu", random_state=0
    ).fit(X, y)
    expected = AdversarialClassifier(
        epochs=1, attack_steps=1, batch_size=16, device="cpu", random_state=0
    ).fit(np.asarray(X), y)
    np.testing.assert_array_equal(clf.predict_proba(X), expected.predict_proba(X))
    assert 0 <= clf.score(X, y) <= 1
