"""Atomic file writes: a temporary file beside the target, then a rename."""

import contextlib
import json
import os
import secrets
from pathlib import Path

__all__ = ["replacing", "replacing_all", "write_json"]


@contextlib.contextmanager
def replacing(path):
    """Yield a temporary path next to ``path``; rename it over ``path`` on success.

    The rename is atomic on POSIX and Windows (``os.replace``) because the
    temporary file lives in the same directory, hence the same file system.
    On failure the temporary file is removed and ``path`` is left untouched,
    so no reader ever sees a half-written file under the final name.
    The one-file case of :func:`replacing_all`.
    """
    with replacing_all([path]) as (temporary,):
        yield temporary


@contextlib.contextmanager
def replacing_all(paths):
    """Yield a list of temporary paths, one next to each of ``paths``; on
    success rename each over its target, in order, then sync the directories.

    Each temporary file is hidden, ``.{name}.{random hex}.tmp``, in the
    directory of its target. If the block fails, or a rename does, the
    temporary files still there are removed and no further target is
    replaced; targets renamed before a failed rename stay replaced. A rename
    is durable only once its directory is synced; where a directory cannot be
    opened (Windows), the rename stands as the file system keeps it. The
    contents are the writer's to flush (``os.fsync``) where they must survive
    a crash.
    """
    targets = [Path(path) for path in paths]
    temporaries = [
        target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        for target in targets
    ]
    try:
        yield temporaries
        for temporary, target in zip(temporaries, targets, strict=True):
            os.replace(temporary, target)
    finally:
        for temporary in temporaries:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
    for directory in dict.fromkeys(target.parent for target in targets):
        with contextlib.suppress(OSError):
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def write_json(path, payload):
    """Write ``payload`` as indented JSON to ``path``, atomically."""
    with replacing(path) as temporary, open(temporary, "w") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")
