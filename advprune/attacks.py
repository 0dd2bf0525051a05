"""Adversarial attacks: FGSM and PGD under L-infinity and L2 budgets.

Pure functions of a model and a batch. They differentiate with respect to the input
only (:func:`torch.autograd.grad`), so the model's parameter gradients are never
touched, and they never switch the model between ``train()`` and ``eval()``: the
caller chooses the mode the attack sees. In train mode, batch normalisation layers
update their running statistics on every attack step, as in any forward pass.

All randomness of the attacks (the random start) is drawn on the device of
``generator`` (the CPU for ``generator=None``, which then uses torch's global CPU
generator) and moved to the device of ``x`` afterwards, so one CPU
:class:`torch.Generator` reproduces the same starts for inputs on any device.
Randomness inside the model itself (dropout in train mode) uses torch's global RNG.

The attacks run under :func:`torch.autocast` if the caller enables it: the model's
forward pass is autocast, the loss is computed in float32 and the perturbation is
kept in the dtype of ``x``.
"""

import math
from numbers import Integral, Real

import torch
import torch.nn.functional as F

from ._validation import check_bounds

__all__ = ["cross_entropy_loss", "cw_margin_loss", "fgsm", "pgd"]

_NORMS = ("linf", "l2")
_LOSS_NAMES = ("ce", "cw")


def _as_float32(logits):
    # Half-precision logits (autocast) would make the loss and its gradient coarse.
    if logits.dtype in (torch.float16, torch.bfloat16):
        return logits.float()
    return logits


def _check_logits_labels(logits, y):
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise ValueError(
            "`logits` must be a 2-D tensor of shape (n_samples, n_classes), got "
            f"{getattr(logits, 'shape', type(logits).__name__)}."
        )
    if not isinstance(y, torch.Tensor) or y.ndim != 1:
        raise ValueError(
            "`y` must be a 1-D tensor of class indices, got "
            f"{getattr(y, 'shape', type(y).__name__)}."
        )
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise TypeError(f"`y` must hold integer class indices, got dtype {y.dtype}.")
    if logits.shape[0] != y.shape[0]:
        raise ValueError(
            f"`logits` and `y` must have the same number of samples, got "
            f"{logits.shape[0]} and {y.shape[0]}."
        )


def cross_entropy_loss(logits, y):
    """Per-sample cross-entropy loss.

    Parameters
    ----------
    logits : torch.Tensor of shape (n_samples, n_classes)
        Unnormalised class scores. Half-precision logits are promoted to float32.
    y : torch.Tensor of shape (n_samples,)
        Integer class indices in ``[0, n_classes)``.

    Returns
    -------
    loss : torch.Tensor of shape (n_samples,)
        ``-log softmax(logits)[i, y[i]]`` for every sample ``i`` (not reduced).

    Examples
    --------
    >>> import torch
    >>> from advprune.attacks import cross_entropy_loss
    >>> logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    >>> cross_entropy_loss(logits, torch.tensor([0, 0]))
    tensor([0.6931, 0.1269])
    """
    _check_logits_labels(logits, y)
    return F.cross_entropy(_as_float32(logits), y, reduction="none")


def cw_margin_loss(logits, y):
    """Per-sample Carlini-Wagner margin loss ``max_{j != y} z_j - z_y``.

    Positive exactly where the sample is misclassified. The margin is not clipped at
    zero (no confidence parameter), so it keeps a gradient on every sample.

    Parameters
    ----------
    logits : torch.Tensor of shape (n_samples, n_classes)
        Unnormalised class scores ``z``, with ``n_classes >= 2``. Half-precision
        logits are promoted to float32.
    y : torch.Tensor of shape (n_samples,)
        Integer class indices in ``[0, n_classes)``.

    Returns
    -------
    loss : torch.Tensor of shape (n_samples,)
        The largest wrong-class logit minus the true-class logit (not reduced).

    Examples
    --------
    >>> import torch
    >>> from advprune.attacks import cw_margin_loss
    >>> logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
    >>> cw_margin_loss(logits, torch.tensor([0, 0]))
    tensor([-1.,  5.])
    """
    _check_logits_labels(logits, y)
    if logits.shape[1] < 2:
        raise ValueError(
            f"`logits` must have at least 2 classes for the CW margin, got "
            f"{logits.shape[1]}."
        )
    logits = _as_float32(logits)
    true_logit = logits.gather(1, y[:, None]).squeeze(1)
    is_true = F.one_hot(y, logits.shape[1]).bool()
    best_other = logits.masked_fill(is_true, float("-inf")).amax(dim=1)
    return best_other - true_logit


def _resolve_loss(loss):
    if callable(loss):
        return loss
    if isinstance(loss, str) and loss in _LOSS_NAMES:
        return cross_entropy_loss if loss == "ce" else cw_margin_loss
    raise ValueError(
        f"`loss` must be one of {_LOSS_NAMES} or a callable (logits, y) -> per-sample "
        f"losses, got {loss!r}."
    )


def _check_real(value, name, *, positive=False):
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"`{name}` must be a real number, got {type(value).__name__}.")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"`{name}` must be a finite number {bound}, got {value}.")
    return value


def _check_inputs(model, x, y, loss_fn):
    if not callable(model):
        raise TypeError(f"`model` must be callable, got {type(model).__name__}.")
    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
        raise TypeError(
            "`x` must be a floating-point torch.Tensor, got "
            f"{getattr(x, 'dtype', type(x).__name__)}."
        )
    if x.ndim < 2:
        raise ValueError(
            f"`x` must have a batch dimension and at least one feature dimension, "
            f"got shape {tuple(x.shape)}."
        )
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"`y` must be a torch.Tensor, got {type(y).__name__}.")
    if y.ndim == 0 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"`x` and `y` must have the same batch size, got {x.shape[0]} and "
            f"{tuple(y.shape)}."
        )
    if loss_fn in (cross_entropy_loss, cw_margin_loss) and (
        y.ndim != 1 or y.dtype.is_floating_point or y.dtype == torch.bool
    ):
        raise ValueError(
            "`y` must be a 1-D integer tensor of class indices for a named loss, got "
            f"shape {tuple(y.shape)} and dtype {y.dtype}."
        )


def _check_generator(generator):
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"`generator` must be None or a torch.Generator, got "
            f"{type(generator).__name__}."
        )


def _per_sample_norm(t):
    return t.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (t.ndim - 1)))


def _random_start(shape, eps, norm, generator, *, dtype, device):
    """Offsets uniform in the ``eps`` ball, one per row of a batch of ``shape``,
    drawn on the generator's device and moved to ``device``."""
    draw_device = generator.device if generator is not None else torch.device("cpu")
    draw_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    if norm == "linf":
        unit = torch.rand(
            shape, generator=generator, device=draw_device, dtype=draw_dtype
        )
        delta = (2 * unit - 1) * eps
    else:
        # Uniform in the L2 ball: a Gaussian direction and radius eps * u^(1/d).
        direction = torch.randn(
            shape, generator=generator, device=draw_device, dtype=draw_dtype
        )
        direction = direction / _per_sample_norm(direction).clamp_min(1e-12)
        n_features = math.prod(shape[1:])
        u = torch.rand(
            (shape[0],) + (1,) * (len(shape) - 1),
            generator=generator,
            device=draw_device,
            dtype=draw_dtype,
        )
        delta = direction * eps * u.pow(1.0 / n_features)
    return delta.to(device=device, dtype=dtype)


def _project(x, x_adv, eps, norm, bounds):
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        factor = (eps / _per_sample_norm(delta).clamp_min(1e-12)).clamp(max=1.0)
        delta = delta * factor
    x_adv = x + delta
    if bounds is not None:
        x_adv = x_adv.clamp(bounds[0], bounds[1])
    return x_adv


def _gradient_step(model, x_adv, y, loss_fn, norm, step_size):
    x_adv = x_adv.detach().requires_grad_(True)
    losses = loss_fn(model(x_adv), y)
    if not isinstance(losses, torch.Tensor) or losses.shape != (x_adv.shape[0],):
        raise ValueError(
            "`loss` must return one loss per sample, of shape "
            f"({x_adv.shape[0]},), got {getattr(losses, 'shape', type(losses))}."
        )
    # Summing keeps each sample's gradient independent of the batch size.
    (grad,) = torch.autograd.grad(losses.float().sum(), x_adv)
    grad = grad.to(x_adv.dtype)
    if norm == "linf":
        step = grad.sign()
    else:
        step = grad / _per_sample_norm(grad).clamp_min(1e-12)
    return x_adv.detach() + step_size * step


def _attack(
    model, x, y, eps, norm, steps, step_size, loss_fn, random_start, bounds, generator
):
    x = x.detach()
    if eps == 0:
        return x.clone()
    if isinstance(random_start, torch.Tensor):
        start = random_start.to(device=x.device, dtype=x.dtype)
        x_adv = _project(x, x + start, eps, norm, bounds)
    elif random_start:
        start = _random_start(
            x.shape, eps, norm, generator, dtype=x.dtype, device=x.device
        )
        x_adv = _project(x, x + start, eps, norm, bounds)
    else:
        x_adv = x.clone()
    with torch.enable_grad():
        for _ in range(steps):
            x_adv = _gradient_step(model, x_adv, y, loss_fn, norm, step_size)
            x_adv = _project(x, x_adv, eps, norm, bounds)
    return x_adv.detach()


def pgd(
    model,
    x,
    y,
    eps=8 / 255,
    *,
    norm="linf",
    steps=10,
    step_size=None,
    loss="ce",
    random_start=True,
    bounds=(0.0, 1.0),
    generator=None,
):
    """Projected gradient descent attack (Madry et al., 2018).

    Maximises ``loss`` over the ball ``||x_adv - x|| <= eps`` (per sample) intersected
    with the box ``bounds``. Each step moves along the sign of the input gradient
    (``norm="linf"``) or the per-sample L2-normalised gradient (``norm="l2"``), then
    projects back onto the ball and clamps to ``bounds``. The last iterate is
    returned (no restarts, no best-iterate tracking).

    The model is run in whatever mode (train/eval) it is in; the caller decides.
    Gradients are taken with respect to the input only, so parameter ``.grad``
    attributes are left as they were.

    Parameters
    ----------
    model : callable
        Maps a batch shaped like ``x`` to logits of shape (n_samples, n_classes),
        usually a :class:`torch.nn.Module`.
    x : torch.Tensor of shape (n_samples, ...)
        Clean floating-point inputs, assumed inside ``bounds``. Not modified.
    y : torch.Tensor of shape (n_samples, ...)
        Integer class indices of shape (n_samples,) for the named losses; for a
        callable ``loss``, anything with ``n_samples`` rows that the callable accepts
        (e.g. the clean-input probabilities for TRADES).
    eps : float, default=8/255
        Radius of the perturbation ball, ``>= 0``, in the scale of ``x``. ``eps=0``
        returns a copy of ``x``.
    norm : {"linf", "l2"}, default="linf"
        Norm of the ball. For ``"l2"`` the norm is taken over each flattened sample.
    steps : int, default=10
        Number of gradient steps, ``>= 1``.
    step_size : float or None, default=None
        Length of each step (in the chosen norm), ``> 0``. ``None`` uses
        ``2.5 * eps / steps`` (Madry et al.).
    loss : {"ce", "cw"} or callable, default="ce"
        Loss to maximise: cross-entropy (:func:`cross_entropy_loss`), the CW margin
        (:func:`cw_margin_loss`), or a callable ``(logits, y) -> losses`` returning a
        tensor of shape (n_samples,). The per-sample losses are summed before
        differentiating, so each sample's step does not depend on the batch size.
    random_start : bool or torch.Tensor, default=True
        Start from a uniform random point of the ball: uniform in the cube for
        ``"linf"``; for ``"l2"`` a Gaussian direction scaled to radius
        ``eps * u**(1/d)`` with ``u ~ U(0, 1)`` and ``d`` the number of features,
        which is uniform in the ball. The start is clamped to ``bounds``. A
        tensor of ``x``'s shape is the start's offset from ``x`` itself,
        projected onto the ball, for callers that draw the starts (the
        data-parallel trainer draws a whole batch's starts in every process
        and attacks its own rows with theirs).
    bounds : tuple of (float, float) or None, default=(0.0, 1.0)
        Box ``(low, high)`` of valid inputs, ``low < high``. ``None`` means unbounded
        features (no clamping).
    generator : torch.Generator or None, default=None
        Source of the random start. Numbers are drawn on the generator's device and
        moved to ``x``'s device, so a CPU generator works for inputs on any device.
        ``None`` uses torch's global CPU generator.

    Returns
    -------
    x_adv : torch.Tensor
        Adversarial inputs, detached, with the shape, dtype and device of ``x``.

    Raises
    ------
    ValueError
        If ``eps``, ``steps``, ``step_size``, ``norm``, ``loss`` or ``bounds`` is
        invalid, if ``x`` and ``y`` differ in batch size, or if a callable ``loss``
        does not return one value per sample.
    TypeError
        If ``x`` is not a floating-point tensor, ``y`` is not a tensor, a number has
        the wrong type, or ``generator`` is not a :class:`torch.Generator`.

    See Also
    --------
    fgsm : The single-step attack.

    Examples
    --------
    >>> import torch
    >>> from advprune.attacks import pgd
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> x, y = torch.rand(5, 4), torch.tensor([0, 1, 2, 0, 1])
    >>> x_adv = pgd(model, x, y, eps=0.1, generator=torch.Generator().manual_seed(0))
    >>> x_adv.shape
    torch.Size([5, 4])
    >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6)
    True
    >>> x_l2 = pgd(model, x, y, eps=0.5, norm="l2", loss="cw", bounds=None)
    >>> bool((x_l2 - x).norm(dim=1).max() <= 0.5 + 1e-6)
    True
    """
    loss_fn = _resolve_loss(loss)
    eps = _check_real(eps, "eps")
    if norm not in _NORMS:
        raise ValueError(f"`norm` must be one of {_NORMS}, got {norm!r}.")
    if isinstance(steps, bool) or not isinstance(steps, Integral):
        raise TypeError(f"`steps` must be an int, got {type(steps).__name__}.")
    if steps < 1:
        raise ValueError(f"`steps` must be >= 1, got {steps}.")
    steps = int(steps)
    if step_size is None:
        step_size = 2.5 * eps / steps
    else:
        step_size = _check_real(step_size, "step_size", positive=True)
    bounds = check_bounds(bounds)
    _check_generator(generator)
    _check_inputs(model, x, y, loss_fn)
    if isinstance(random_start, torch.Tensor):
        if random_start.shape != x.shape:
            raise ValueError(
                f"`random_start` as a tensor must have the shape of `x`, "
                f"{tuple(x.shape)}; got {tuple(random_start.shape)}."
            )
    else:
        random_start = bool(random_start)
    return _attack(
        model,
        x,
        y,
        eps,
        norm,
        steps,
        step_size,
        loss_fn,
        random_start,
        bounds,
        generator,
    )


def fgsm(
    model,
    x,
    y,
    eps=8 / 255,
    *,
    norm="linf",
    loss="ce",
    random_start=False,
    bounds=(0.0, 1.0),
    generator=None,
):
    """Fast gradient sign method (Goodfellow et al., 2015) and its random-start variant.

    Without random start: one gradient step of length ``eps`` from ``x`` (the sign of
    the gradient for ``"linf"``, the L2-normalised gradient for ``"l2"``), clamped to
    ``bounds``. With ``random_start=True``: the "fast is better than free" variant
    (Wong et al., 2020), a uniform random start in the ``eps`` ball, one step of
    length ``1.25 * eps``, then projection back onto the ball and clamping to
    ``bounds``. Equivalent to :func:`pgd` with ``steps=1`` and that step size.

    The model is run in whatever mode (train/eval) it is in; the caller decides.
    Parameter ``.grad`` attributes are left as they were.

    Parameters
    ----------
    model : callable
        Maps a batch shaped like ``x`` to logits of shape (n_samples, n_classes).
    x : torch.Tensor of shape (n_samples, ...)
        Clean floating-point inputs, assumed inside ``bounds``. Not modified.
    y : torch.Tensor of shape (n_samples, ...)
        Integer class indices for the named losses, or what a callable ``loss``
        accepts.
    eps : float, default=8/255
        Radius of the perturbation ball, ``>= 0``.
    norm : {"linf", "l2"}, default="linf"
        Norm of the ball (L2 over each flattened sample).
    loss : {"ce", "cw"} or callable, default="ce"
        Loss to maximise; see :func:`pgd`.
    random_start : bool, default=False
        Use the Wong et al. random start and step of ``1.25 * eps``; see :func:`pgd`
        for how the start is drawn.
    bounds : tuple of (float, float) or None, default=(0.0, 1.0)
        Box of valid inputs, ``low < high``; ``None`` means no clamping.
    generator : torch.Generator or None, default=None
        Source of the random start; see :func:`pgd`.

    Returns
    -------
    x_adv : torch.Tensor
        Adversarial inputs, detached, with the shape, dtype and device of ``x``.

    Raises
    ------
    ValueError, TypeError
        On invalid arguments, as for :func:`pgd`.

    See Also
    --------
    pgd : The iterative attack.

    Examples
    --------
    >>> import torch
    >>> from advprune.attacks import fgsm
    >>> model = torch.nn.Linear(2, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    ...     _ = model.bias.zero_()
    >>> x, y = torch.tensor([[0.5, 0.5]]), torch.tensor([0])
    >>> fgsm(model, x, y, eps=0.1)
    tensor([[0.4000, 0.6000]])
    """
    loss_fn = _resolve_loss(loss)
    eps = _check_real(eps, "eps")
    if norm not in _NORMS:
        raise ValueError(f"`norm` must be one of {_NORMS}, got {norm!r}.")
    bounds = check_bounds(bounds)
    _check_generator(generator)
    _check_inputs(model, x, y, loss_fn)
    random_start = bool(random_start)
    step_size = 1.25 * eps if random_start else eps
    return _attack(
        model, x, y, eps, norm, 1, step_size, loss_fn, random_start, bounds, generator
    )
