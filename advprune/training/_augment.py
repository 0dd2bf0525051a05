"""Augmentation of training batches, and how a run recognises its augmentation."""

import inspect
import re
from numbers import Integral

import torch

__all__ = ["RandomCropFlip"]


class RandomCropFlip:
    """Random crop after zero padding, and random horizontal flip, per image.

    The standard augmentation of adversarial training on CIFAR-10 (as in Rice
    et al., 2020, and the runs of Nieth et al., 2024): each image of a batch is
    padded by ``padding`` zero pixels on every side, cropped back to its size at
    a random offset, and mirrored left-right with probability 1/2. Pass an
    instance as ``augment`` to :class:`AdversarialTrainer`,
    :class:`advprune.AdversarialClassifier` or :class:`advprune.AdversarialPruner`.
    It applies to training batches only, never to recordings or predictions.

    Parameters
    ----------
    padding : int, default=4
        Zero pixels added on each side before cropping; 0 disables the crop.
    flip : bool, default=True
        Whether to mirror images left-right at random.

    Examples
    --------
    >>> import torch
    >>> from advprune.training import RandomCropFlip, torch_generator
    >>> augment = RandomCropFlip(padding=2)
    >>> x = torch.rand(8, 3, 32, 32)
    >>> out = augment(x, torch_generator(0))
    >>> out.shape
    torch.Size([8, 3, 32, 32])
    >>> bool(((out == 0) | torch.isin(out, x)).all())
    True
    """

    def __init__(self, padding=4, flip=True):
        if not isinstance(padding, Integral) or isinstance(padding, bool):
            raise TypeError(f"padding must be an int; got {padding!r}.")
        if padding < 0:
            raise ValueError(f"padding must be an int >= 0; got {padding!r}.")
        if not isinstance(flip, bool):
            raise TypeError(f"flip must be a bool; got {flip!r}.")
        self.padding = int(padding)
        self.flip = flip

    def __repr__(self):
        return f"RandomCropFlip(padding={self.padding}, flip={self.flip})"

    def __call__(self, x, generator):
        """Augment a batch ``x`` of shape (n, channels, height, width).

        Offsets and flips are drawn on the CPU from ``generator``, so a seeded run
        is reproducible on any device; the images stay on ``x``'s device.
        """
        if x.ndim != 4:
            raise ValueError(
                "RandomCropFlip augments image batches of shape (n, channels, "
                f"height, width); got shape {tuple(x.shape)}."
            )
        n, channels, height, width = x.shape
        pad = self.padding
        row_offsets = torch.randint(2 * pad + 1, (n, 1), generator=generator)
        col_offsets = torch.randint(2 * pad + 1, (n, 1), generator=generator)
        rows = row_offsets + torch.arange(height)
        cols = col_offsets + torch.arange(width)
        if self.flip:
            mirrored = torch.rand(n, 1, generator=generator) < 0.5
            cols = torch.where(mirrored, cols.flip(1), cols)
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        rows, cols = rows.to(x.device), cols.to(x.device)
        return padded[
            torch.arange(n, device=x.device)[:, None, None, None],
            torch.arange(channels, device=x.device)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]


# What CPython's default reprs add to tell objects apart in one process; it
# differs in the next one.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def stable_identity(augment):
    """A description of a callable that is the same in every process that
    builds the same one, for the identity of a resumable run.

    A function, builtin or class is its module and qualified name; a bound
    method, that of its function and the identity of its object; any other
    object (an instance of an augmentation class, a ``functools.partial``)
    is its class and its repr, memory addresses removed. The code of a
    function is not part of it.

    Examples
    --------
    >>> from advprune.training._augment import RandomCropFlip, stable_identity
    >>> stable_identity(RandomCropFlip(padding=2))
    'advprune.training._augment.RandomCropFlip: RandomCropFlip(padding=2, flip=True)'
    >>> stable_identity(RandomCropFlip.__call__)
    'advprune.training._augment.RandomCropFlip.__call__'
    >>> stable_identity(None) is None
    True
    """
    if augment is None:
        return None
    if inspect.ismethod(augment):
        function, owner = augment.__func__, augment.__self__
        return f"{stable_identity(function)} of {stable_identity(owner)}"
    module, name = (
        getattr(augment, "__module__", None),
        getattr(augment, "__qualname__", None),
    )
    if isinstance(module, str) and isinstance(name, str):
        return f"{module}.{name}"
    cls = type(augment)
    return f"{cls.__module__}.{cls.__qualname__}: {_ADDRESS.sub('', repr(augment))}"
