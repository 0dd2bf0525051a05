"""Checks of the path arguments of the CIFAR-10 readers and the pool I/O."""

import os
from pathlib import Path


def _check_path(path, name):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or path; got {type(path).__name__}.")
    return Path(path)


def _check_input_file(path, name):
    path = _check_path(path, name)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no such file {str(path)!r}.")
    return path


def _check_output_file(path, name):
    path = _check_path(path, name)
    if path.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a directory; expected a file path.")
    if not path.parent.is_dir():
        raise ValueError(
            f"{name} {str(path)!r} cannot be written: directory "
            f"{str(path.parent)!r} does not exist."
        )
    return path
