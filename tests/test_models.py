import numpy as np
import pytest
import torch
from torch import nn

from advprune.models import (
    MLP,
    PreActResNet18,
    SmallCNN,
    WideResNet,
    default_model,
    penultimate_features,
)


def n_parameters(model):
    return sum(p.numel() for p in model.parameters())


def check_interface(model, x, n_classes, embedding_dim):
    model.eval()
    with torch.no_grad():
        logits = model(x)
        features = model.features(x)
    assert logits.shape == (len(x), n_classes)
    assert features.shape == (len(x), embedding_dim)
    assert model.embedding_dim == embedding_dim
    assert isinstance(model.embedding_dim, int)
    assert isinstance(model.head, nn.Linear)
    torch.testing.assert_close(model.head(features), logits)


# -- the models ---------------------------------------------------------------


def test_mlp_interface():
    torch.manual_seed(0)
    check_interface(MLP(64, 10), torch.rand(3, 64), 10, 256)
    check_interface(MLP(64, 4, hidden_sizes=(32, 16)), torch.rand(3, 64), 4, 16)


def test_mlp_flattens_inputs_and_allows_no_hidden_layer():
    torch.manual_seed(0)
    model = MLP(64, 10, hidden_sizes=(8,))
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(model(x), model(x.flatten(1)))
    linear = MLP(5, 3, hidden_sizes=())
    x = torch.rand(2, 5)
    check_interface(linear, x, 3, 5)
    torch.testing.assert_close(linear.features(x), x)
    assert n_parameters(linear) == 5 * 3 + 3


def test_mlp_parameter_count():
    # 64*256 + 256 + 256*256 + 256 + 256*10 + 10
    assert n_parameters(MLP(64, 10)) == 85002


@pytest.mark.parametrize(
    "in_channels, image_size, shape",
    [(1, 8, (1, 8, 8)), (1, 28, (1, 28, 28)), (3, (10, 12), (3, 10, 12))],
)
def test_small_cnn_interface(in_channels, image_size, shape):
    torch.manual_seed(0)
    model = SmallCNN(in_channels, 7, image_size)
    check_interface(model, torch.rand(4, *shape), 7, 128)


def test_small_cnn_size_and_options():
    assert n_parameters(SmallCNN(1, 10, 8)) < 100_000
    plain = SmallCNN(1, 10, 8, batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in SmallCNN(1, 10, 8).modules()) == 3
    wide = SmallCNN(1, 10, 8, channels=(8, 8, 8, 8))
    assert sum(isinstance(m, nn.Conv2d) for m in wide.modules()) == 4
    check_interface(wide, torch.rand(2, 1, 8, 8), 10, 128)


def test_small_cnn_outputs_do_not_depend_on_batch_in_eval_mode():
    torch.manual_seed(0)
    model = SmallCNN(1, 10, 8).eval()
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[:1], model(x[:1]))


def test_small_cnn_rejects_wrong_input_shape():
    model = SmallCNN(1, 10, 8)
    with pytest.raises(ValueError, match=r"\(n_samples, 1, 8, 8\)"):
        model(torch.rand(2, 1, 9, 9))
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(2, 64))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"in_channels": 0}, "in_channels"),
        ({"n_classes": 1}, "n_classes"),
        ({"image_size": (8,)}, "image_size"),
        ({"image_size": 0}, "image_size"),
        ({"channels": ()}, "channels"),
        ({"channels": (16, 0)}, "channels"),
    ],
)
def test_small_cnn_rejects_bad_arguments(kwargs, match):
    args = {"in_channels": 1, "n_classes": 10, "image_size": 8} | kwargs
    with pytest.raises(ValueError, match=match):
        SmallCNN(**args)


def test_preact_resnet18_interface_and_size():
    torch.manual_seed(0)
    model = PreActResNet18(n_classes=10)
    check_interface(model, torch.rand(2, 3, 32, 32), 10, 512)
    # The CIFAR PreAct-ResNet-18 of the robust-training literature: 11.17M.
    assert n_parameters(model) == 11_172_170
    grey = PreActResNet18(n_classes=5, in_channels=1)
    check_interface(grey, torch.rand(2, 1, 28, 28), 5, 512)


def test_wide_resnet_small_interface():
    torch.manual_seed(0)
    model = WideResNet(depth=10, widen_factor=1)
    check_interface(model, torch.rand(2, 3, 32, 32), 10, 64)
    # One block per stage: 3 blocks of 2 convolutions, the stem, and the 1x1
    # shortcuts of the two downsampling blocks.
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 1 + 6 + 2
    grey = WideResNet(depth=16, widen_factor=2, n_classes=3, in_channels=1)
    check_interface(grey, torch.rand(2, 1, 16, 16), 3, 128)


def test_wide_resnet_28_10_has_the_standard_size():
    model = WideResNet()
    # WRN-28-10 for CIFAR-10: 36,479,194 parameters (Zagoruyko & Komodakis).
    assert n_parameters(model) == 36_479_194
    assert model.embedding_dim == 640


def test_wide_resnet_dropout_is_active_in_train_mode_only():
    torch.manual_seed(0)
    model = WideResNet(depth=10, widen_factor=1, dropout=0.5)
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(x), model(x))
        model.train()
        assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"depth": 12}, "depth"),
        ({"depth": 4}, "depth"),
        ({"widen_factor": 0}, "widen_factor"),
        ({"n_classes": 0}, "n_classes"),
        ({"in_channels": 0}, "in_channels"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
    ],
)
def test_wide_resnet_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WideResNet(**{"depth": 10, "widen_factor": 1} | kwargs)


def test_mlp_rejects_bad_arguments():
    with pytest.raises(ValueError, match="in_features"):
        MLP(0, 10)
    with pytest.raises(ValueError, match="n_classes"):
        MLP(4, 1)
    with pytest.raises(ValueError, match="hidden_sizes"):
        MLP(4, 2, hidden_sizes=(8, 0))
    with pytest.raises(ValueError, match="hidden_sizes"):
        MLP(4, 2, hidden_sizes=8)


# -- default_model --------------------------------------------------------------


@pytest.mark.parametrize(
    "sample_shape, expected",
    [
        ((64,), MLP),
        ((1, 8, 8), SmallCNN),
        ((1, 28, 28), SmallCNN),
        ((3, 28, 28), SmallCNN),
        ((1, 32, 32), SmallCNN),
        ((3, 64, 64), SmallCNN),
        ((3, 32, 32), PreActResNet18),
    ],
)
def test_default_model_dispatch(sample_shape, expected):
    torch.manual_seed(0)
    model = default_model(sample_shape, 4)
    assert type(model) is expected
    check_interface(model, torch.rand(2, *sample_shape), 4, model.embedding_dim)


def test_default_model_accepts_torch_and_numpy_shapes():
    assert type(default_model(torch.Size([1, 8, 8]), 10)) is SmallCNN
    shape = np.zeros((5, 12)).shape[1:]
    model = default_model(tuple(np.int64(s) for s in shape), np.int64(3))
    assert type(model) is MLP
    assert model.head.out_features == 3


@pytest.mark.parametrize(
    "sample_shape", [(8, 8), (), (1, 1, 8, 8), (0, 8, 8), (2.0,), "abc", 64, None]
)
def test_default_model_rejects_bad_shapes(sample_shape):
    with pytest.raises(ValueError, match="sample_shape"):
        default_model(sample_shape, 10)


def test_default_model_rejects_bad_n_classes():
    with pytest.raises(ValueError, match="n_classes"):
        default_model((64,), 1)


# -- penultimate_features -------------------------------------------------------


def test_penultimate_features_on_plain_sequential():
    torch.manual_seed(0)
    hidden = nn.Linear(6, 5)
    net = nn.Sequential(nn.Flatten(), hidden, nn.ReLU(), nn.Linear(5, 3))
    x = torch.rand(4, 2, 3)
    got = penultimate_features(net, x)
    torch.testing.assert_close(got, torch.relu(hidden(x.flatten(1))))
    assert not got.requires_grad
    assert all(not m._forward_pre_hooks for m in net.modules())


def test_penultimate_features_uses_features_method():
    torch.manual_seed(0)
    model = SmallCNN(1, 10, 8).eval()
    x = torch.rand(3, 1, 8, 8)
    got = penultimate_features(model, x)
    with torch.no_grad():
        torch.testing.assert_close(got, model.features(x))


def test_penultimate_features_ignores_a_features_submodule():
    # torchvision's VGG layout: `features` is the convolutional trunk.
    class VGGLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU())
            self.classifier = nn.Sequential(
                nn.Flatten(), nn.Linear(2 * 4 * 4, 6), nn.ReLU(), nn.Linear(6, 3)
            )

        def forward(self, x):
            return self.classifier(self.features(x))

    torch.manual_seed(0)
    model = VGGLike()
    x = torch.rand(2, 1, 4, 4)
    got = penultimate_features(model, x)
    with torch.no_grad():
        expected = model.classifier[:3](model.features(x))
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("training", [True, False])
def test_penultimate_features_keeps_mode(training):
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    model.train(training)
    penultimate_features(model, torch.rand(2, 3))
    assert all(m.training == training for m in model.modules())
    cnn = SmallCNN(1, 3, 4).train(training)
    penultimate_features(cnn, torch.rand(2, 1, 4, 4))
    assert all(m.training == training for m in cnn.modules())


def test_penultimate_features_errors():
    with pytest.raises(ValueError, match="no `features` method"):
        penultimate_features(nn.Sequential(nn.Conv2d(1, 1, 1)), torch.rand(1, 1, 2, 2))

    class SkipsHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(3, 3)
            self.unused = nn.Linear(3, 2)

        def forward(self, x):
            return self.body(x)

    with pytest.raises(ValueError, match="not called"):
        penultimate_features(SkipsHead(), torch.rand(2, 3))
    with pytest.raises(TypeError, match="model"):
        penultimate_features(lambda x: x, torch.rand(2, 3))
