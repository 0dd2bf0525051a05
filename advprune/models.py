"""Default networks for scoring runs and final adversarial training.

Every model here exposes the same small interface used by the rest of the package:

- ``features(x)``: penultimate features of shape (n_samples, embedding_dim), the
  representation the extrapolation step can embed samples with;
- ``head``: the final :class:`torch.nn.Linear` layer, with
  ``forward(x) == head(features(x))``;
- ``embedding_dim``: the width of ``features(x)``.

Inputs are expected in ``[0, 1]`` (the scale of the attack budgets); the models do
not normalise them. Models with batch normalisation behave differently in train and
eval mode; attacks run the model in the mode the caller leaves it in, and in train
mode every attack step updates the running statistics.
"""

import copy
import math
from numbers import Integral

import joblib
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MLP",
    "PreActResNet18",
    "SmallCNN",
    "WideResNet",
    "build_model",
    "default_model",
    "penultimate_features",
]


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return int(value)


def _check_n_classes(n_classes):
    if isinstance(n_classes, bool) or not isinstance(n_classes, Integral):
        raise ValueError(f"`n_classes` must be an integer >= 2, got {n_classes!r}.")
    if n_classes < 2:
        raise ValueError(f"`n_classes` must be an integer >= 2, got {n_classes!r}.")
    return int(n_classes)


class MLP(nn.Module):
    """Fully connected ReLU network for flat feature vectors.

    Parameters
    ----------
    in_features : int
        Number of input features. Inputs of shape (n_samples, ...) are flattened, so
        the product of the non-batch dimensions must equal ``in_features``.
    n_classes : int
        Number of classes (output logits), ``>= 2``.
    hidden_sizes : sequence of int, default=(256, 256)
        Widths of the hidden layers, each followed by a ReLU. An empty sequence gives
        a linear (multinomial logistic) model whose features are the flattened input.

    Attributes
    ----------
    embedding_dim : int
        Width of :meth:`features`: ``hidden_sizes[-1]``, or ``in_features`` without
        hidden layers.
    head : torch.nn.Linear
        The output layer.

    Examples
    --------
    >>> import torch
    >>> from advprune.models import MLP
    >>> model = MLP(64, 10, hidden_sizes=(32,))
    >>> model(torch.rand(4, 64)).shape
    torch.Size([4, 10])
    >>> model.features(torch.rand(4, 64)).shape, model.embedding_dim
    (torch.Size([4, 32]), 32)
    """

    def __init__(self, in_features, n_classes, hidden_sizes=(256, 256)):
        super().__init__()
        in_features = _check_positive_int(in_features, "in_features")
        n_classes = _check_n_classes(n_classes)
        try:
            hidden_sizes = tuple(hidden_sizes)
        except TypeError:
            raise ValueError(
                f"`hidden_sizes` must be a sequence of positive integers, got "
                f"{hidden_sizes!r}."
            ) from None
        for width in hidden_sizes:
            _check_positive_int(width, "hidden_sizes")
        layers = []
        width = in_features
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, int(hidden)), nn.ReLU()]
            width = int(hidden)
        self.in_features = in_features
        self.body = nn.Sequential(nn.Flatten(), *layers)
        self.embedding_dim = width
        self.head = nn.Linear(width, n_classes)

    def features(self, x):
        """Penultimate features of shape (n_samples, embedding_dim)."""
        return self.body(x)

    def forward(self, x):
        """Logits of shape (n_samples, n_classes)."""
        return self.head(self.features(x))


def _image_size(image_size):
    if isinstance(image_size, Integral) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    try:
        height, width = image_size
    except (TypeError, ValueError):
        raise ValueError(
            f"`image_size` must be an int or a (height, width) pair, got "
            f"{image_size!r}."
        ) from None
    return (
        _check_positive_int(height, "image_size"),
        _check_positive_int(width, "image_size"),
    )


class SmallCNN(nn.Module):
    """Small convolutional network for small images (e.g. 1x8x8 digits, 1x28x28).

    3x3 convolutions (16, 32, 64 channels by default; stride 1 for the first, 2 for
    the others), each followed by batch normalisation (optional) and a ReLU, then
    adaptive average pooling to 2x2, a linear layer to 128 units with ReLU (the
    penultimate features) and a linear head. About 58k parameters with the default
    channels; sized so that PGD adversarial training on thousands of 8x8 images per
    epoch runs on a few CPU cores.

    Parameters
    ----------
    in_channels : int
        Number of input channels.
    n_classes : int
        Number of classes, ``>= 2``.
    image_size : int or tuple of (int, int)
        Height and width of the inputs; an int means square images. Inputs of another
        shape are rejected.
    channels : sequence of int, default=(16, 32, 64)
        Output channels of the convolutions, one per layer (at least one).
    batch_norm : bool, default=True
        Insert batch normalisation after each convolution. Batch norm speeds up
        training, but its statistics then depend on the mode the model is in: clean
        and adversarial batches share running statistics, and attacks run in train
        mode update them. ``False`` gives a model whose outputs never depend on the
        batch.

    Attributes
    ----------
    embedding_dim : int
        Width of :meth:`features` (128).
    head : torch.nn.Linear
        The output layer.

    Examples
    --------
    >>> import torch
    >>> from advprune.models import SmallCNN
    >>> model = SmallCNN(1, 10, 8)
    >>> model(torch.rand(3, 1, 8, 8)).shape
    torch.Size([3, 10])
    >>> model.features(torch.rand(3, 1, 8, 8)).shape
    torch.Size([3, 128])
    """

    def __init__(
        self,
        in_channels,
        n_classes,
        image_size,
        *,
        channels=(16, 32, 64),
        batch_norm=True,
    ):
        super().__init__()
        in_channels = _check_positive_int(in_channels, "in_channels")
        n_classes = _check_n_classes(n_classes)
        self.image_size = _image_size(image_size)
        self.in_channels = in_channels
        try:
            channels = tuple(channels)
        except TypeError:
            channels = ()
        if not channels:
            raise ValueError(
                f"`channels` must be a non-empty sequence of positive integers, got "
                f"{channels!r}."
            )
        layers = []
        width = in_channels
        for i, out_channels in enumerate(channels):
            out_channels = _check_positive_int(out_channels, "channels")
            stride = 1 if i == 0 else 2
            layers.append(
                nn.Conv2d(width, out_channels, 3, stride, 1, bias=not batch_norm)
            )
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU())
            width = out_channels
        self.conv = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(4 * width, 128)
        self.embedding_dim = 128
        self.head = nn.Linear(128, n_classes)

    def features(self, x):
        """Penultimate features of shape (n_samples, 128)."""
        expected = (self.in_channels, *self.image_size)
        if tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"SmallCNN expects inputs of shape (n_samples, {expected[0]}, "
                f"{expected[1]}, {expected[2]}), got {tuple(x.shape)}."
            )
        out = self.pool(self.conv(x)).flatten(1)
        return F.relu(self.fc(out))

    def forward(self, x):
        """Logits of shape (n_samples, n_classes)."""
        return self.head(self.features(x))


class _PreActBlock(nn.Module):
    def __init__(self, in_planes, planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        # The projection shortcut takes the pre-activated input, as in He et al. 2016.
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """Pre-activation ResNet-18 (He et al., 2016) for 32x32 images.

    The CIFAR variant used in adversarial-training work (e.g. Wong et al., 2020;
    Rice et al., 2020): a 3x3 stem convolution without downsampling, four stages of
    two pre-activation basic blocks (64, 128, 256, 512 channels), a final batch norm
    and ReLU, global average pooling and a linear head. About 11.2M parameters.
    Global pooling makes it accept other image sizes too.

    Parameters
    ----------
    n_classes : int, default=10
        Number of classes, ``>= 2``.
    in_channels : int, default=3
        Number of input channels.

    Attributes
    ----------
    embedding_dim : int
        Width of :meth:`features` (512).
    head : torch.nn.Linear
        The output layer.

    Examples
    --------
    >>> import torch
    >>> from advprune.models import PreActResNet18
    >>> model = PreActResNet18(n_classes=10).eval()
    >>> model(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> model.embedding_dim
    512
    """

    def __init__(self, n_classes=10, in_channels=3):
        super().__init__()
        n_classes = _check_n_classes(n_classes)
        in_channels = _check_positive_int(in_channels, "in_channels")
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        stages = []
        in_planes = 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(
                nn.Sequential(
                    _PreActBlock(in_planes, planes, stride),
                    _PreActBlock(planes, planes, 1),
                )
            )
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn = nn.BatchNorm2d(512)
        self.embedding_dim = 512
        self.head = nn.Linear(512, n_classes)

    def features(self, x):
        """Penultimate features of shape (n_samples, 512)."""
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x):
        """Logits of shape (n_samples, n_classes)."""
        return self.head(self.features(x))


class _WideBasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride, dropout):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = F.relu(self.bn2(self.conv1(out)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        return self.conv2(out) + shortcut


class WideResNet(nn.Module):
    """Wide residual network WRN-depth-k (Zagoruyko & Komodakis, 2016).

    The CIFAR architecture used in robust training (Madry et al., Zhang et al. 2019,
    Rebuffi et al. 2021, Wang et al. 2023): a 3x3 stem convolution with 16 channels,
    three stages of ``(depth - 4) / 6`` pre-activation basic blocks with
    ``16k, 32k, 64k`` channels (strides 1, 2, 2; 1x1 projection shortcuts where the
    shape changes), a final batch norm and ReLU, global average pooling and a linear
    head. WRN-28-10 has 36.5M parameters. Convolutions are initialised with He
    (fan-out) normal weights, batch norms with unit scale and zero shift, the head's
    bias with zeros, as in the reference implementation. Activations are ReLU.

    Parameters
    ----------
    depth : int, default=28
        Total depth; ``depth - 4`` must be a positive multiple of 6.
    widen_factor : int, default=10
        Width multiplier ``k``.
    n_classes : int, default=10
        Number of classes, ``>= 2``.
    in_channels : int, default=3
        Number of input channels.
    dropout : float, default=0.0
        Dropout probability between the two convolutions of each block, in
        ``[0, 1)``; active in train mode only.

    Attributes
    ----------
    embedding_dim : int
        Width of :meth:`features` (``64 * widen_factor``).
    head : torch.nn.Linear
        The output layer.

    Examples
    --------
    >>> import torch
    >>> from advprune.models import WideResNet
    >>> model = WideResNet(depth=10, widen_factor=1).eval()
    >>> model(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> model.features(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 64])
    """

    def __init__(
        self, depth=28, widen_factor=10, n_classes=10, in_channels=3, dropout=0.0
    ):
        super().__init__()
        depth = _check_positive_int(depth, "depth")
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(
                f"`depth` must be 6 * n + 4 with n >= 1 (10, 16, 22, 28, ...), got "
                f"{depth}."
            )
        widen_factor = _check_positive_int(widen_factor, "widen_factor")
        n_classes = _check_n_classes(n_classes)
        in_channels = _check_positive_int(in_channels, "in_channels")
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, int | float)
            or not 0.0 <= dropout < 1.0
        ):
            raise ValueError(f"`dropout` must be a float in [0, 1), got {dropout!r}.")
        n_blocks = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        stages = []
        in_planes = 16
        for planes, stride in zip(widths, (1, 2, 2), strict=True):
            blocks = []
            for i in range(n_blocks):
                blocks.append(
                    _WideBasicBlock(
                        in_planes, planes, stride if i == 0 else 1, float(dropout)
                    )
                )
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = stages
        self.bn = nn.BatchNorm2d(widths[-1])
        self.embedding_dim = widths[-1]
        self.head = nn.Linear(widths[-1], n_classes)
        self._reset_parameters()

    def _reset_parameters(self):
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1]
                fan_out *= module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.zeros_(self.head.bias)

    def features(self, x):
        """Penultimate features of shape (n_samples, 64 * widen_factor)."""
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn(out))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x):
        """Logits of shape (n_samples, n_classes)."""
        return self.head(self.features(x))


def default_model(sample_shape, n_classes):
    """Build the default network for samples of a given shape.

    Parameters
    ----------
    sample_shape : tuple of int
        Shape of one sample, without the batch dimension:

        - ``(d,)``: flat features -> :class:`MLP` ``(d, n_classes)``;
        - ``(3, 32, 32)``: CIFAR-sized colour images -> :class:`PreActResNet18`;
        - any other ``(C, H, W)``: small images -> :class:`SmallCNN`.
    n_classes : int
        Number of classes, ``>= 2``.

    Returns
    -------
    model : torch.nn.Module
        A freshly initialised model with ``features``, ``head`` and
        ``embedding_dim``.

    Raises
    ------
    ValueError
        If ``sample_shape`` is not ``(d,)`` or ``(C, H, W)`` with positive integer
        entries, or ``n_classes < 2``.

    Examples
    --------
    >>> from advprune.models import default_model
    >>> type(default_model((64,), 10)).__name__
    'MLP'
    >>> type(default_model((1, 8, 8), 10)).__name__
    'SmallCNN'
    >>> type(default_model((3, 32, 32), 10)).__name__
    'PreActResNet18'
    """
    try:
        shape = tuple(sample_shape)
    except TypeError:
        shape = None
    if (
        shape is None
        or len(shape) not in (1, 3)
        or any(
            isinstance(s, bool) or not isinstance(s, Integral) or s < 1 for s in shape
        )
    ):
        raise ValueError(
            "`sample_shape` must be (n_features,) or (channels, height, width) with "
            f"positive integers, got {sample_shape!r}."
        )
    shape = tuple(int(s) for s in shape)
    n_classes = _check_n_classes(n_classes)
    if len(shape) == 1:
        return MLP(shape[0], n_classes)
    if shape == (3, 32, 32):
        return PreActResNet18(n_classes=n_classes, in_channels=3)
    channels, height, width = shape
    return SmallCNN(channels, n_classes, (height, width))


MODEL_NAMES = ("small-cnn", "mlp", "preact-resnet18", "wrn-28-10")
"""tuple of str: Architectures :func:`build_model` builds by name."""


def build_model(model, sample_shape, n_classes, *, random_state=None):
    """A freshly initialised network, seeded without touching torch's global RNG.

    The one place where the estimators, the command line and the benchmarks
    turn a model choice into a network.

    Parameters
    ----------
    model : None, str or torch.nn.Module
        ``None``: :func:`default_model` for the sample shape. A name of
        :data:`MODEL_NAMES`: ``"small-cnn"`` (:class:`SmallCNN`), ``"mlp"``
        (:class:`MLP` on the flattened sample), ``"preact-resnet18"``
        (:class:`PreActResNet18`) or ``"wrn-28-10"`` (:class:`WideResNet`). A
        module: a deep copy of it, with its current weights (the template is
        never modified).
    sample_shape : tuple of int
        Shape of one sample, ``(d,)`` or ``(channels, height, width)``.
    n_classes : int
        Number of classes, ``>= 2``.
    random_state : int or None, default=None
        Seed of the initialisation; ``None`` draws from torch's global RNG.

    Returns
    -------
    torch.nn.Module

    Examples
    --------
    >>> from advprune.models import build_model
    >>> a = build_model("small-cnn", (1, 8, 8), 10, random_state=0)
    >>> b = build_model(None, (1, 8, 8), 10, random_state=0)
    >>> type(a).__name__, bool((a.head.weight == b.head.weight).all())
    ('SmallCNN', True)
    """
    if model is not None and not isinstance(model, str | nn.Module):
        raise TypeError(
            f"model must be None, one of {MODEL_NAMES} or a torch.nn.Module; got "
            f"{type(model).__name__}."
        )
    if isinstance(model, str) and model not in MODEL_NAMES:
        raise ValueError(f"model must be one of {MODEL_NAMES}; got {model!r}.")
    with torch.random.fork_rng(devices=[]):
        if random_state is not None:
            torch.manual_seed(random_state)
        if isinstance(model, nn.Module):
            return copy.deepcopy(model)
        if model is None:
            return default_model(sample_shape, n_classes)
        shape = tuple(sample_shape)
        if model == "mlp":
            return MLP(math.prod(shape), n_classes)
        if len(shape) != 3:
            raise ValueError(
                f"model={model!r} takes images (channels, height, width); samples "
                f"have shape {shape}."
            )
        if model == "small-cnn":
            return SmallCNN(shape[0], n_classes, shape[1:])
        if model == "preact-resnet18":
            return PreActResNet18(n_classes=n_classes, in_channels=shape[0])
        return WideResNet(
            depth=28, widen_factor=10, n_classes=n_classes, in_channels=shape[0]
        )


def _fingerprint(model):
    """A stable hash of a module's architecture and weights.

    ``joblib.hash`` cannot key on the module itself: pickled tensors hash
    differently on every call, even with equal values.
    """
    weights = [t.detach().cpu().numpy() for t in model.state_dict().values()]
    return joblib.hash([repr(model), weights])


def penultimate_features(model, x):
    """Penultimate-layer features of a model, as an (n_samples, d) tensor.

    Uses ``model.features(x)`` when ``features`` is a method (the models of this
    module). Otherwise runs ``model(x)`` and captures the input of the last
    :class:`torch.nn.Linear` module (in registration order) with a forward hook.
    A ``features`` attribute that is itself a submodule (torchvision's VGG, AlexNet,
    DenseNet, MobileNet: the convolutional trunk, not the penultimate layer) is
    ignored in favour of the hook.

    Runs under :func:`torch.no_grad` and leaves the model's train/eval mode alone:
    put the model in the mode you want (usually ``model.eval()``) before calling.

    Parameters
    ----------
    model : torch.nn.Module
        The network.
    x : torch.Tensor of shape (n_samples, ...)
        A batch of inputs.

    Returns
    -------
    features : torch.Tensor of shape (n_samples, d)
        Detached features, flattened after the batch dimension.

    Raises
    ------
    TypeError
        If ``model`` is not a :class:`torch.nn.Module`.
    ValueError
        If ``model`` has no ``features`` method and no :class:`torch.nn.Linear`
        module, or its last linear layer is not called by ``model(x)``.

    Examples
    --------
    >>> import torch
    >>> from advprune.models import penultimate_features
    >>> net = torch.nn.Sequential(
    ...     torch.nn.Flatten(), torch.nn.Linear(6, 5), torch.nn.ReLU(),
    ...     torch.nn.Linear(5, 3))
    >>> penultimate_features(net, torch.rand(4, 2, 3)).shape
    torch.Size([4, 5])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"`model` must be a torch.nn.Module, got {type(model).__name__}."
        )
    features = getattr(model, "features", None)
    with torch.no_grad():
        if callable(features) and not isinstance(features, nn.Module):
            return features(x).flatten(1).detach()
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(
                "`model` has no `features` method and no torch.nn.Linear layer whose "
                "input could serve as penultimate features."
            )
        captured = []

        def hook(module, args):
            captured[:] = [args[0]]

        handle = linears[-1].register_forward_pre_hook(hook)
        try:
            model(x)
        finally:
            handle.remove()
    if not captured:
        raise ValueError(
            "The last torch.nn.Linear layer of `model` was not called in its forward "
            "pass; cannot capture penultimate features."
        )
    return captured[0].flatten(1).detach()
