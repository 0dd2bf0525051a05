"""Tests of advprune.metrics.robust_accuracy and make_robust_scorer."""

import sys

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import StandardScaler

import advprune.attacks
from advprune import AdversarialClassifier, make_pipeline
from advprune.metrics import make_robust_scorer, robust_accuracy

# Twenty 1-D samples: class "low" below 0.5, class "high" above.
X_LINE = np.concatenate([np.linspace(0.05, 0.25, 10), np.linspace(0.75, 0.95, 10)])
X_LINE = X_LINE.astype(np.float32)[:, None]
Y_LINE = np.repeat(["low", "high"], 10)


def _threshold_classifier():
    """A classifier whose model is the fixed threshold x = 0.5.

    The template's weights are the starting point and a negligible learning
    rate keeps them, so the model is known exactly.
    """
    template = torch.nn.Linear(1, 2)
    with torch.no_grad():
        # classes_ is sorted: column 0 is "high", column 1 is "low".
        template.weight.copy_(torch.tensor([[10.0], [-10.0]]))
        template.bias.copy_(torch.tensor([-5.0, 5.0]))
    clf = AdversarialClassifier(
        template,
        method="standard",
        eps=0.1,
        norm="l2",
        lr=1e-12,
        epochs=1,
        weight_decay=0.0,
        bounds=(0.0, 1.0),
        device="cpu",
        random_state=0,
    )
    return clf.fit(X_LINE, Y_LINE)


@pytest.fixture
def planted_attack(monkeypatch):
    """Replace PGD by an attack that flips a chosen set of samples per loss.

    Loss "ce" breaks the samples at x in CE_BREAKS, loss "cw" those in
    CW_BREAKS, by mirroring them to 1 - x; all calls are recorded.
    """
    calls = []
    breaks = {
        "ce": {0.05, 0.95, 0.75},
        "cw": {0.95, 0.25},
    }

    def fake_pgd(model, x, y, eps=8 / 255, *, loss="ce", generator=None, **kwargs):
        calls.append({"loss": loss, "eps": eps, "n": len(x), **kwargs})
        values = np.round(x[:, 0].numpy(), 4)
        flip = torch.tensor(
            [any(np.isclose(v, b) for b in breaks[loss]) for v in values]
        )
        x_adv = x.clone()
        x_adv[flip] = 1 - x[flip]
        return x_adv

    monkeypatch.setattr(advprune.attacks, "pgd", fake_pgd)
    return calls


def test_worst_case_over_losses_per_sample(planted_attack):
    clf = _threshold_classifier()
    assert clf.score(X_LINE, Y_LINE) == 1.0
    # Broken by some attack: 0.05, 0.95, 0.75 (ce) and 0.25 (cw): 4 of 20.
    assert robust_accuracy(clf, X_LINE, Y_LINE) == pytest.approx(16 / 20)
    assert robust_accuracy(clf, X_LINE, Y_LINE, losses=("ce",)) == pytest.approx(
        17 / 20
    )
    assert robust_accuracy(clf, X_LINE, Y_LINE, losses="cw") == pytest.approx(18 / 20)


def test_training_budget_is_the_default_and_broken_samples_are_not_reattacked(
    planted_attack,
):
    clf = _threshold_classifier()
    robust_accuracy(clf, X_LINE, Y_LINE, steps=7, restarts=2)
    assert [c["loss"] for c in planted_attack] == ["ce", "cw", "ce", "cw"]
    # The classifier's own eps, norm and input box.
    assert {(c["eps"], c["norm"], c["bounds"], c["steps"]) for c in planted_attack} == {
        (0.1, "l2", (0.0, 1.0), 7)
    }
    # 20 clean-correct, 17 left after "ce", 16 after "cw", then no change.
    assert [c["n"] for c in planted_attack] == [20, 17, 16, 16]
    planted_attack.clear()
    robust_accuracy(clf, X_LINE, Y_LINE, eps=0.3, norm="linf", batch_size=8)
    assert {(c["eps"], c["norm"]) for c in planted_attack} == {(0.3, "linf")}


def test_misclassified_and_unknown_labels_are_not_robust(planted_attack):
    clf = _threshold_classifier()
    y = Y_LINE.copy()
    y[10] = "low"  # x = 0.75 is predicted "high": wrong on clean data
    y[11] = "unseen"  # a label the classifier does not know
    # Wrong on clean data: 0.75 and 0.7722; broken by attacks: 0.05, 0.25, 0.95.
    assert robust_accuracy(clf, X_LINE, y) == pytest.approx(15 / 20)


def test_eps_zero_is_clean_accuracy_and_attacks_only_lower_it():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(150, 2)).astype(np.float32)
    y = (X[:, 0] + 0.1 * rng.standard_normal(150) > 0.5).astype(int)
    clf = AdversarialClassifier(eps=0.05, epochs=3, device="cpu", random_state=0)
    clf.fit(X, y)
    clean = clf.score(X, y)
    assert robust_accuracy(clf, X, y, eps=0.0, steps=2) == clean
    small = robust_accuracy(clf, X, y, eps=0.05, steps=10, random_state=0)
    large = robust_accuracy(clf, X, y, eps=0.5, steps=10, random_state=0)
    assert large < small < clean
    # Linf budget 1 on [0, 1] inputs: any point of the box is reachable.
    assert robust_accuracy(clf, X, y, eps=1.0, steps=10, random_state=0) < 0.05


def test_deterministic_under_random_state():
    rng = np.random.default_rng(1)
    X = rng.uniform(size=(120, 2)).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(int)
    clf = AdversarialClassifier(eps=0.1, epochs=2, device="cpu", random_state=0)
    clf.fit(X, y)
    # Few steps from a random start: the result depends on the start.
    kwargs = {"eps": 0.1, "steps": 1, "step_size": 0.02, "random_state": 3}
    first = robust_accuracy(clf, X, y, **kwargs)
    assert robust_accuracy(clf, X, y, **kwargs) == first
    seeds = {
        robust_accuracy(clf, X, y, **{**kwargs, "random_state": s}) for s in range(4)
    }
    assert len(seeds) > 1
    state = torch.get_rng_state()
    robust_accuracy(clf, X, y, eps=0.1, steps=2)
    assert torch.equal(torch.get_rng_state(), state)


def test_images_memmaps_and_flat_inputs(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(40, 1, 8, 8)).astype(np.float32)
    y = (X[:, 0, :, :4].mean(axis=(1, 2)) > 0.5).astype(int)
    clf = AdversarialClassifier(
        eps=0.05, epochs=1, attack_steps=2, device="cpu", random_state=0
    ).fit(X, y)
    path = tmp_path / "X.npy"
    np.save(path, X)
    X_map = np.load(path, mmap_mode="r")
    kwargs = {"steps": 3, "random_state": 0}
    expected = robust_accuracy(clf, X, y, **kwargs)
    assert robust_accuracy(clf, X_map, y, **kwargs) == expected
    assert robust_accuracy(clf, X.reshape(40, 64), y, **kwargs) == expected
    with pytest.raises(ValueError, match="shape"):
        robust_accuracy(clf, X.reshape(40, 1, 4, 16), y)


class DropHalf(BaseEstimator):
    def fit_resample(self, X, y):
        return X[::2], y[::2]


def test_pipelines_skip_resamplers_and_reject_transformers(planted_attack):
    pipe = make_pipeline(DropHalf(), _threshold_classifier())
    pipe.fit(X_LINE, Y_LINE)
    assert pipe[-1].classes_.tolist() == ["high", "low"]
    assert robust_accuracy(pipe, X_LINE, Y_LINE) == pytest.approx(16 / 20)

    # Standardised features are unbounded.
    scaled = make_pipeline(
        StandardScaler(), _threshold_classifier().set_params(bounds=None)
    )
    scaled.fit(X_LINE, Y_LINE)
    with pytest.raises(ValueError, match="standardscaler"):
        robust_accuracy(scaled, X_LINE, Y_LINE)


def test_bad_estimators_and_options():
    clf = _threshold_classifier()
    with pytest.raises(TypeError, match="AdversarialClassifier"):
        robust_accuracy(LogisticRegression().fit(X_LINE, Y_LINE), X_LINE, Y_LINE)
    with pytest.raises(NotFittedError):
        robust_accuracy(AdversarialClassifier(), X_LINE, Y_LINE)
    for bad in (
        {"eps": -0.1},
        {"norm": "l1"},
        {"steps": 0},
        {"restarts": 1.5},
        {"batch_size": True},
        {"step_size": 0.0},
        {"losses": ()},
        {"losses": ("ce", "dlr")},
        {"attack": "fgsm"},
    ):
        name = next(iter(bad))
        with pytest.raises(ValueError, match=name):
            robust_accuracy(clf, X_LINE, Y_LINE, **bad)
    with pytest.raises(ValueError, match="y must be 1-D"):
        robust_accuracy(clf, X_LINE, Y_LINE[:5])


def test_make_robust_scorer_validates_and_scores(planted_attack):
    clf = _threshold_classifier()
    scorer = make_robust_scorer(losses=("ce",), steps=3)
    assert repr(scorer) == "make_robust_scorer(losses=('ce',), steps=3)"
    assert scorer(clf, X_LINE, Y_LINE) == robust_accuracy(
        clf, X_LINE, Y_LINE, losses=("ce",), steps=3
    )
    with pytest.raises(TypeError, match="unknown arguments \\['eps_'\\]"):
        make_robust_scorer(eps_=0.1)
    with pytest.raises(ValueError, match="steps"):
        make_robust_scorer(steps=-1)


def test_robust_scorer_in_grid_search():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(90, 2)).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(int)
    search = GridSearchCV(
        AdversarialClassifier(epochs=2, device="cpu", random_state=0),
        {"eps": [0.02, 0.1]},
        cv=2,
        scoring=make_robust_scorer(steps=3, random_state=0),
    ).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert scores.shape == (2,)
    assert np.all((scores >= 0) & (scores <= 1))


# -- AutoAttack -----------------------------------------------------------------


def _four_blobs_classifier():
    """A linear classifier of four noisy 8x8 image classes: PGD leaves some
    samples robust at a small budget, and each forward pass costs microseconds,
    so that AutoAttack's 5,000 Square queries stay fast on a CPU."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 170)
    centers = rng.uniform(0.3, 0.7, size=(4, 1, 8, 8))
    X = np.clip(centers[y] + 0.15 * rng.normal(size=(170, 1, 8, 8)), 0, 1)
    X = X.astype(np.float32)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    clf = AdversarialClassifier(
        model, eps=0.03, attack_steps=3, epochs=10, device="cpu", random_state=0
    )
    return clf.fit(X[:150], y[:150]), X[150:], y[150:]


def test_autoattack_is_never_above_pgd():
    pytest.importorskip("pyautoattack", reason="the autoattack extra is not installed")
    clf, X, y = _four_blobs_classifier()
    state = torch.get_rng_state()
    # Linf: the whole standard version, Square's 5,000 queries included
    # (samples survive APGD and FAB): about 15 s, nearly all of it Square.
    pgd = robust_accuracy(clf, X, y, eps=0.06, norm="linf", steps=20, random_state=0)
    auto = robust_accuracy(
        clf, X, y, eps=0.06, norm="linf", attack="autoattack", random_state=0
    )
    assert 0 < auto <= pgd < clf.score(X, y)
    # AutoAttack reseeds torch's generator; the caller's stream is restored.
    assert torch.equal(torch.get_rng_state(), state)
    # L2: one short PGD step leaves samples that AutoAttack breaks (all of
    # them, so that its Square attack has nothing left to run on).
    weak = robust_accuracy(
        clf, X, y, eps=1.0, norm="l2", steps=1, step_size=0.05, random_state=0
    )
    auto = robust_accuracy(
        clf, X, y, eps=1.0, norm="l2", attack="autoattack", random_state=0
    )
    assert auto < weak
    scorer = make_robust_scorer(eps=1.0, norm="l2", attack="autoattack")
    assert scorer(clf, X, y) <= weak


def test_autoattack_refuses_what_it_cannot_attack():
    pytest.importorskip("pyautoattack", reason="the autoattack extra is not installed")
    two_classes = _threshold_classifier()
    with pytest.raises(ValueError, match="image inputs"):
        robust_accuracy(two_classes, X_LINE, Y_LINE, attack="autoattack")
    clf, X, y = _four_blobs_classifier()
    with pytest.raises(ValueError, match="bounds"):
        robust_accuracy(clf.set_params(bounds=(0.0, 2.0)), X, y, attack="autoattack")
    few = AdversarialClassifier(epochs=1, attack_steps=1, device="cpu")
    few.fit(X, y % 2)
    with pytest.raises(ValueError, match="at least 4 classes"):
        robust_accuracy(few, X, y % 2, attack="autoattack")


def test_autoattack_without_the_extra_names_it(monkeypatch):
    # None in sys.modules makes the import fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "pyautoattack", None)
    with pytest.raises(ImportError, match="autoattack.*extra"):
        make_robust_scorer(attack="autoattack")
    with pytest.raises(ImportError, match="pip install"):
        robust_accuracy(_threshold_classifier(), X_LINE, Y_LINE, attack="autoattack")
