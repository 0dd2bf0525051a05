"""Writes that cannot half-exist: a temporary file beside the target, then a rename.

Everything :mod:`advprune` writes goes through :func:`replacing` or
:func:`replacing_all`, so that a reader never sees a half-written file under a
final name, whatever stops the writer. The rest of this module closes the ways
such a write could still fail badly:

- A writer killed with SIGKILL cannot remove its temporary file. Each writer
  holds an advisory lock on its temporary files while it writes them, so that
  the next writer of the same target removes the unlocked ones, left by dead
  writers, and never those of a live one (:func:`remove_stale_temporaries`).
- A write through a memory map onto a full disk is a SIGBUS that kills the
  process, since the page cannot be stored. :func:`open_memmap` reserves the
  file's blocks first, so that a full disk is an ``OSError`` (ENOSPC) before
  anything is written.
- Several files renamed one after another are not one atomic change: a crash
  between the renames leaves new files beside old ones. With ``manifest``,
  :func:`replacing_all` first records a fingerprint of each new file in a
  manifest, and :func:`check_manifest` then tells a complete set from a mixed
  one.
"""

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import stat
import tempfile
from pathlib import Path

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, stale files are left alone
    fcntl = None

__all__ = [
    "MANIFEST",
    "check_free_space",
    "check_manifest",
    "check_writable",
    "fingerprint",
    "open_memmap",
    "remove_stale_temporaries",
    "replacing",
    "replacing_all",
    "write_json",
    "write_npy",
]

MANIFEST = "advprune-manifest.json"
"""str: The name of the manifest of a directory's files written as one unit."""

# A fingerprint reads this many blocks of this size, spread over the file: cheap
# for a pool of any size, and enough to tell two different writes apart.
_FINGERPRINT_BLOCKS = 16
_FINGERPRINT_BLOCK_BYTES = 4096


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
def replacing_all(paths, *, manifest=None):
    """Yield a list of temporary paths, one next to each of ``paths``; on
    success rename each over its target, in order, then sync the directories.

    Each temporary file is hidden, ``.{name}.{random hex}.tmp``, in the
    directory of its target, and created empty and locked before it is
    yielded; the temporary files that killed writers of the same targets left
    are removed first (:func:`remove_stale_temporaries`). If the block fails,
    or a rename does, the temporary files still there are removed and no
    further target is replaced; targets renamed before a failed rename stay
    replaced. A rename is durable only once its directory is synced; where a
    directory cannot be opened (Windows), the rename stands as the file system
    keeps it. The contents are the writer's to flush (``os.fsync``) where they
    must survive a crash.

    With ``manifest`` (a path in the directory of every target), the set is
    committed as one unit: after the block and before the first rename, the
    manifest is replaced by one that records the :func:`fingerprint` of each
    new file, so that whatever stops the renames, :func:`check_manifest`
    refuses the mixed set of files left.
    """
    targets = [Path(path) for path in paths]
    if manifest is not None:
        manifest = Path(manifest)
        if any(target.parent != manifest.parent for target in targets):
            raise ValueError("manifest must be in the directory of every target.")
        targets_with_manifest = [*targets, manifest]
    else:
        targets_with_manifest = targets
    for target in targets_with_manifest:
        remove_stale_temporaries(target)
    locks = []
    try:
        for target in targets_with_manifest:
            locks.append(_create_locked(target))
        temporaries = [temporary for temporary, _ in locks[: len(targets)]]
        yield temporaries
        if manifest is not None:
            record = {
                "format": 1,
                "files": {
                    target.name: fingerprint(temporary)
                    for target, temporary in zip(targets, temporaries, strict=True)
                },
            }
            manifest_temporary = locks[-1][0]
            with open(manifest_temporary, "w", encoding="utf-8") as fh:
                json.dump(record, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            # The manifest goes first: from here on, until every rename is
            # done, the files under the final names do not match it.
            os.replace(manifest_temporary, manifest)
        for temporary, target in zip(temporaries, targets, strict=True):
            os.replace(temporary, target)
    finally:
        for temporary, fd in locks:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            if fd is not None:
                os.close(fd)
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


def _create_locked(target):
    """Create an empty hidden temporary file beside ``target`` and lock it;
    return ``(path, fd)``. The lock lives as long as ``fd`` is open; ``fd`` is
    None where there are no locks."""
    while True:
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        if fcntl is None:
            # Without locks, nothing to hold: and Windows cannot rename a file
            # that is open.
            os.close(fd)
            return temporary, None
        fcntl.flock(fd, fcntl.LOCK_EX)
        # Another writer's cleaning may have removed the file between its
        # creation and the lock; then it is not ours to use, start again.
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.stat(temporary), os.fstat(fd)):
                return temporary, fd
        os.close(fd)


def remove_stale_temporaries(path):
    """Remove the temporary files of :func:`replacing_all` that writers of
    ``path`` killed before they could clean up left beside it.

    A live writer holds a lock on its temporary files, so only those of dead
    writers are removed, even with several processes writing the same
    target. Where advisory locks do not exist (Windows), nothing is removed.
    """
    if fcntl is None:
        return
    path = Path(path)
    prefix = f".{path.name}."
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        token = name[len(prefix) : -len(".tmp")]
        if name.startswith(prefix) and name.endswith(".tmp") and len(token) == 8:
            _remove_if_unlocked(Path(entry.path))


def _remove_if_unlocked(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.path.samestat(os.stat(path), os.fstat(fd)):
            path.unlink()
    except OSError:  # locked by a live writer, or already gone
        pass
    finally:
        os.close(fd)


def open_memmap(path, *, dtype, shape):
    """A new ``.npy`` file at ``path`` opened as a writable memory map, its disk
    space reserved.

    ``np.lib.format.open_memmap`` creates a sparse file: its blocks are
    allocated only as pages are written back, and a page that cannot be
    stored because the disk is full kills the process with SIGBUS. The
    blocks are reserved here (``posix_fallocate``), so that a full disk is an
    ``OSError`` with ``errno.ENOSPC`` before anything is written. Where
    ``posix_fallocate`` does not exist (macOS, Windows), the free space is
    checked instead, which another writer can still use up.
    """
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    size = os.path.getsize(path)
    try:
        if hasattr(os, "posix_fallocate"):
            with open(path, "r+b") as fh:
                os.posix_fallocate(fh.fileno(), 0, size)
        else:
            check_free_space(Path(path).parent, size, str(path))
    except BaseException:
        del array
        raise
    return array


def check_free_space(directory, n_bytes, what):
    """Raise an ``OSError`` (ENOSPC) naming ``what`` unless ``directory``'s file
    system has ``n_bytes`` free; a check before a long write, not a promise
    (another writer can use the space up meanwhile)."""
    free = shutil.disk_usage(directory).free
    if n_bytes > free:
        raise OSError(
            errno.ENOSPC,
            f"not enough free disk space in {str(directory)!r} for {what}: "
            f"{_size(n_bytes)} needed, {_size(free)} free",
        )


def _size(n_bytes):
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return (
                f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.2f} {unit}"
            )
        n_bytes /= 1024


def write_npy(file, chunks, shape, dtype):
    """Write the row blocks ``chunks`` as a new .npy file ``file`` (a temporary
    file of :func:`replacing_all`), flushed to disk.

    Plain file writes, so that a full disk is an ``OSError`` with ENOSPC
    (``ndarray.tofile``, which ``np.save`` uses, reports a short write without
    the reason).
    """
    header = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": shape,
    }
    with open(file, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        rows = 0
        for chunk in chunks:
            chunk = np.asarray(chunk)
            if chunk.ndim != len(shape) or chunk.shape[1:] != shape[1:]:
                raise ValueError(
                    f"chunks must be blocks of rows of shape (k, "
                    f"{', '.join(map(str, shape[1:]))}); got {chunk.shape}."
                )
            if not np.can_cast(chunk.dtype, dtype, casting="safe"):
                raise TypeError(
                    f"chunks of dtype {chunk.dtype} cannot be stored as {dtype} "
                    "without changing values."
                )
            rows += len(chunk)
            if rows > shape[0]:
                raise ValueError(
                    f"chunks hold more than the {shape[0]} rows of shape {shape}."
                )
            f.write(np.ascontiguousarray(chunk, dtype=dtype).data)
        if rows != shape[0]:
            raise ValueError(
                f"chunks hold {rows} rows; shape {shape} needs {shape[0]}."
            )
        f.flush()
        os.fsync(f.fileno())


def fingerprint(path):
    """SHA-256 (hex) of a file's size and of 16 blocks of 4 KiB spread evenly
    over it, the first and the last included; the whole file up to 64 KiB.

    Cheap for a file of any size, and different for two writes of different
    contents but for a contrived pair. It tells which write a file comes
    from; it is no check of every byte.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        digest.update(size.to_bytes(8, "little"))
        block = _FINGERPRINT_BLOCK_BYTES
        if size <= _FINGERPRINT_BLOCKS * block:
            digest.update(fh.read())
        else:
            last = size - block
            for i in range(_FINGERPRINT_BLOCKS):
                fh.seek(i * last // (_FINGERPRINT_BLOCKS - 1))
                digest.update(fh.read(block))
    return digest.hexdigest()


def check_manifest(manifest, names, *, remedy="write them again"):
    """Check the files ``names``, in the directory of ``manifest``, against the
    fingerprints it records; a name it does not list, or a missing file, is
    not checked.

    Returns whether ``manifest`` exists. Raises a ``ValueError`` naming the
    file when one does not match, or when the manifest cannot be read; the
    message ends with ``remedy``.
    """
    manifest = Path(manifest)
    try:
        with open(manifest, encoding="utf-8") as fh:
            record = json.load(fh)
        files = record["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not a mapping")
    except FileNotFoundError:
        return False
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(
            f"the manifest {str(manifest)!r} cannot be read ({type(exc).__name__}: "
            f"{exc}); delete it, or {remedy}."
        ) from None
    for name in names:
        path = manifest.parent / name
        # A missing file is the reader's to report, as it would without a
        # manifest.
        if name not in files or not path.exists():
            continue
        if fingerprint(path) != files[name]:
            raise ValueError(
                f"{str(path)!r} is not the file that {str(manifest)!r} records: the "
                "files of that directory come from different writes (one that was "
                f"interrupted, or a file copied over another); {remedy}, or delete "
                f"the manifest if the file was replaced on purpose."
            )
    return True


def check_writable(directory):
    """Raise an ``OSError`` unless files can be created in ``directory``, or, if
    it does not exist yet, in the nearest existing directory above it (where
    it would be created). Leaves nothing behind, even if killed.

    Tried with a real file, since permission bits say nothing of a read-only
    file system, and nothing to the superuser.
    """
    directory = Path(directory).absolute()
    existing = next(p for p in (directory, *directory.parents) if p.exists())
    if not stat.S_ISDIR(existing.stat().st_mode):
        raise NotADirectoryError(
            errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing)
        )
    # An unnamed file (O_TMPFILE where the file system has it) or one removed
    # at once.
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise type(exc)(
            exc.errno, f"cannot create a file in {str(existing)!r}: {exc.strerror}"
        ) from exc
