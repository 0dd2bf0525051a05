"""Dropping the pages of read-only memory maps from the resident set.

Pages of a file mapping count towards the process's resident set size once read,
and the kernel reclaims them only under memory pressure, so streaming through a
10-GB memory map would otherwise show a 10-GB peak RSS. ``MADV_DONTNEED`` on a
shared read-only mapping only unmaps the pages; the file and the page cache are
untouched, and a later read maps them again. Private (copy-on-write) and writable
maps are left alone, because dropping their pages could discard the caller's
in-memory changes.
"""

import mmap

import numpy as np

__all__ = ["mapping_owner", "read_only_span", "release_pages", "release_span"]


def mapping_owner(array):
    """The ``np.memmap`` that owns the file mapping under ``array``, or None."""
    owner = array
    while isinstance(owner, np.ndarray) and not isinstance(owner.base, mmap.mmap):
        owner = owner.base
    return owner if isinstance(owner, np.memmap) else None


def read_only_span(array):
    """``(mapping, start, length)``: the page-aligned bytes ``array`` spans in its
    read-only shared file mapping; None where releasing them is unsafe or
    unsupported (no ``madvise``, no mapping, a private or writable map, negative
    strides)."""
    if not hasattr(mmap, "MADV_DONTNEED") or array.size == 0:
        return None
    owner = mapping_owner(array)
    if owner is None or owner.mode != "r" or min(array.strides, default=0) < 0:
        return None
    buffer = owner.base
    first = array.ctypes.data - np.frombuffer(buffer, dtype=np.uint8).ctypes.data
    shape, strides = array.shape, array.strides
    extent = sum((n - 1) * step for n, step in zip(shape, strides, strict=True))
    last = min(first + extent + array.itemsize, len(buffer))
    first -= first % mmap.PAGESIZE
    return buffer, first, last - first


def release_pages(array):
    """Drop the pages ``array`` spans from the resident set, where that is safe."""
    release_span(read_only_span(array))


def release_span(span):
    """Drop the pages of a span from :func:`read_only_span` from the resident
    set; nothing if ``span`` is None. For callers that keep the span of an
    array they read repeatedly."""
    if span is not None:
        buffer, start, length = span
        buffer.madvise(mmap.MADV_DONTNEED, start, length)
