"""Atomic file writes: a temporary file beside the target, then a rename."""

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["replacing"]


@contextlib.contextmanager
def replacing(path):
    """Yield a temporary path next to ``path``; rename it over ``path`` on success.

    The rename is atomic on POSIX and Windows (``os.replace``) because the
    temporary file lives in the same directory, hence the same file system.
    On failure the temporary file is removed and ``path`` is left untouched,
    so no reader ever sees a half-written file under the final name.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
