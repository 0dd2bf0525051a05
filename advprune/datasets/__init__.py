"""Data: the embedded digits pool, CIFAR-10, and generated pools on disk.

The method of :mod:`advprune` targets large generated training pools added to
a small real training set. :func:`load_digits_pool` reproduces that setting
in miniature on the 8x8 digits that ship with scikit-learn, so that examples,
tests and ``advprune demo`` run anywhere without a download;
:func:`load_tabular_pool` generates a second such setting, as unlike the
digits as possible (flat features, classes of several modes, label flips).

For the real setting this module reads CIFAR-10 (the official binary version
as plain bytes; the python version only through a restricted unpickler) and
generated pools in the published ``.npz`` layout, converted once into ``.npy``
files that open as memory maps. :class:`ImageArray` presents stored ``uint8``
images to the estimators as float32 in [0, 1], converting only the rows read,
so that a pool of millions of images is streamed from disk instead of loaded.
"""

from ._cifar import load_cifar10, load_cifar10_python
from ._digits import load_digits_pool

# Pickles of an ImageArray name its reconstructors, _image_array and
# _reopen_image_array, by this package's path (as when it was one module).
from ._imagearray import ImageArray, _image_array, _reopen_image_array  # noqa: F401
from ._pools import convert_npz_pool, load_npy_pair, load_pool, save_npy_chunked
from ._tabular import load_tabular_pool

__all__ = [
    "ImageArray",
    "convert_npz_pool",
    "load_cifar10",
    "load_cifar10_python",
    "load_digits_pool",
    "load_npy_pair",
    "load_pool",
    "load_tabular_pool",
    "save_npy_chunked",
]
