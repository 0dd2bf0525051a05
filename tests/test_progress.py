"""Every long step shows a progress bar when verbose, and nothing otherwise."""

import numpy as np
import torch

from advprune import AdversarialClassifier, AdversarialPruner
from advprune.metrics import robust_accuracy
from advprune.training import AdversarialTrainer


def _data():
    X = np.random.default_rng(0).uniform(size=(120, 4)).astype(np.float32)
    return X, (X[:, 0] > 0.5).astype(np.int64)


def _last_state(stderr, desc):
    """The last drawing of the bar called ``desc`` (tqdm redraws with \\r)."""
    drawings = [part for part in stderr.replace("\n", "\r").split("\r") if desc in part]
    assert drawings, stderr
    return drawings[-1]


def test_training_shows_batches_epochs_and_recording(capsys):
    X, y = _data()
    trainer = AdversarialTrainer(
        torch.nn.Linear(4, 2), eps=0.05, epochs=2, batch_size=40, attack_steps=1,
        device="cpu", random_state=0, verbose=True,
    )  # fmt: skip
    trainer.fit(X, y)
    err = capsys.readouterr().err
    # 3 batches per epoch, one bar over the run, with its ETA and the epoch.
    bar = _last_state(err, "adversarial training")
    assert "6/6" in bar and "epoch 2/2" in bar and "loss" in bar
    assert "recording epoch 2" in err


def test_pruner_shows_embedding_and_extrapolation(capsys):
    X, y = _data()
    pruner = AdversarialPruner(
        importance="mean_loss", extrapolation="knn", subset_size=30, epochs=2,
        attack_steps=1,
        device="cpu", random_state=0, verbose=True,
    )  # fmt: skip
    pruner.fit(X, y)
    err = capsys.readouterr().err
    assert "120/120" in _last_state(err, "embedding")
    assert "90/90" in _last_state(err, "extrapolating")
    pruner.set_params(verbose=False).fit(X, y)
    assert capsys.readouterr().err == ""


def test_robust_evaluation_shows_samples(capsys):
    X, y = _data()
    clf = AdversarialClassifier(epochs=1, attack_steps=1, device="cpu").fit(X, y)
    robust_accuracy(clf, X, y, steps=2, batch_size=50, verbose=True)
    assert "120/120" in _last_state(capsys.readouterr().err, "robust accuracy (PGD-2)")
    robust_accuracy(clf, X, y, steps=2)
    assert capsys.readouterr().err == ""
