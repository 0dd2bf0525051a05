import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits

from advprune import AdversarialClassifier, AdversarialPruner
from advprune.models import SmallCNN
from advprune.training import AdversarialTrainer, RandomCropFlip, torch_generator


def _images(n=6, seed=0):
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_crop_flip_keeps_shape_and_takes_pixels_from_the_image_or_padding():
    x = _images()
    out = RandomCropFlip(padding=2)(x, torch_generator(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    for image, augmented in zip(x, out, strict=True):
        pixels = augmented[augmented != 0]
        assert torch.isin(pixels, image).all()


def test_crop_flip_of_one_image_is_a_shifted_and_possibly_mirrored_copy():
    x = _images(n=40)
    out = RandomCropFlip(padding=2)(x, torch_generator(1))
    found_shift = found_flip = False
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        candidates = [
            (dy, dx, mirror)
            for dy in range(5)
            for dx in range(5)
            for mirror in (False, True)
            if torch.equal(
                out[i],
                (
                    padded[i, :, dy : dy + 8, dx : dx + 8].flip(-1)
                    if mirror
                    else padded[i, :, dy : dy + 8, dx : dx + 8]
                ),
            )
        ]
        assert candidates, f"image {i} is not a crop of its padded original"
        dy, dx, mirror = candidates[0]
        found_shift |= (dy, dx) != (2, 2)
        found_flip |= mirror
    assert found_shift and found_flip


def test_crop_flip_without_padding_or_flip_is_the_identity():
    x = _images()
    assert torch.equal(RandomCropFlip(padding=0, flip=False)(x, torch_generator(0)), x)
    mirrored = RandomCropFlip(padding=0)(x, torch_generator(0))
    for image, out in zip(x, mirrored, strict=True):
        assert torch.equal(out, image) or torch.equal(out, image.flip(-1))


def test_crop_flip_is_reproducible_and_leaves_the_input_alone():
    x = _images()
    before = x.clone()
    a = RandomCropFlip()(x, torch_generator(3))
    b = RandomCropFlip()(x, torch_generator(3))
    assert torch.equal(a, b)
    assert torch.equal(x, before)
    assert repr(RandomCropFlip()) == "RandomCropFlip(padding=4, flip=True)"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"padding": -1}, ValueError, "padding must be an int >= 0"),
        ({"padding": 1.5}, TypeError, "padding must be an int"),
        ({"padding": True}, TypeError, "padding must be an int"),
        ({"flip": "yes"}, TypeError, "flip must be a bool"),
    ],
)
def test_crop_flip_rejects_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        RandomCropFlip(**kwargs)


def test_crop_flip_refuses_non_image_batches():
    with pytest.raises(ValueError, match=r"\(n, channels, height, width\)"):
        RandomCropFlip()(torch.rand(4, 10), torch_generator(0))


def test_trainer_dry_runs_augment_before_training():
    model = torch.nn.Linear(10, 2)
    weights = [p.detach().clone() for p in model.parameters()]
    X = np.random.default_rng(0).random((50, 10)).astype(np.float32)
    y = np.arange(50) % 2
    trainer = AdversarialTrainer(model, augment=RandomCropFlip(), device="cpu")
    with pytest.raises(ValueError, match="RandomCropFlip augments image batches"):
        trainer.fit(X, y)
    assert not hasattr(trainer, "history_")
    assert all(
        torch.equal(p, w) for p, w in zip(model.parameters(), weights, strict=True)
    )

    def wrong_shape(x, generator):
        return x[:, :5]

    trainer = AdversarialTrainer(model, augment=wrong_shape, device="cpu")
    with pytest.raises(ValueError, match="must return a tensor of the batch's shape"):
        trainer.fit(X, y)


def _digits(n):
    digits = load_digits()
    X = (digits.images[:n] / 16).astype(np.float32)[:, None]
    return X, digits.target[:n]


def test_classifier_trains_on_augmented_batches_only():
    X, y = _digits(300)
    seen = []

    def recording_crop_flip(x, generator):
        seen.append(x.shape[0])
        return RandomCropFlip(padding=1)(x, generator)

    params = dict(eps=0.05, attack_steps=1, epochs=2, batch_size=64, device="cpu")
    plain = AdversarialClassifier(random_state=0, **params).fit(X, y)
    augmented = AdversarialClassifier(
        augment=recording_crop_flip, random_state=0, **params
    ).fit(X, y)
    # The dry run (2 samples), then 5 batches per epoch for 2 epochs.
    assert seen == [2] + [64, 64, 64, 64, 44] * 2
    assert isinstance(augmented.module_, SmallCNN)
    assert not np.allclose(augmented.predict_proba(X), plain.predict_proba(X))
    seen.clear()
    augmented.predict(X)
    assert seen == []
    assert clone(augmented).get_params()["augment"] is not None


def test_bad_augment_parameter_is_refused_before_work():
    X, y = _digits(100)
    with pytest.raises(ValueError, match="'augment' parameter"):
        AdversarialClassifier(augment="flip", device="cpu").fit(X, y)
    with pytest.raises(ValueError, match="'augment' parameter"):
        AdversarialPruner(augment=3, device="cpu").fit(X, y)


def test_pruner_passes_augment_to_its_scoring_run():
    X, y = _digits(400)
    calls = []

    def counting(x, generator):
        calls.append(x.shape[0])
        return x

    AdversarialPruner(
        prune_ratio=0.5,
        importance="mean_loss",
        extrapolation="knn",
        subset_size=0.5,
        epochs=2,
        attack_steps=1,
        batch_size=100,
        min_steps=None,
        augment=counting,
        device="cpu",
        random_state=0,
    ).fit(X, y)
    assert calls == [2, 100, 100, 100, 100]
