import os
import re

import numpy as np
import pytest

from advprune._mmap import read_only_span, release_pages

linux_only = pytest.mark.skipif(
    not os.path.exists("/proc/self/status"), reason="Linux /proc only"
)


def _rss_file_kib():
    with open("/proc/self/status") as status:
        return int(re.search(r"RssFile:\s+(\d+)", status.read()).group(1))


@pytest.fixture
def ones_file(tmp_path):
    """64 MiB of float64 ones, 128 columns, as a .npy file."""
    path = tmp_path / "big.npy"
    data = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.float64, shape=(64 * 1024, 128)
    )
    data[:] = 1.0
    data.flush()
    del data
    return path


@linux_only
def test_release_pages_drops_read_pages_from_resident_set(ones_file):
    mapped = np.load(ones_file, mmap_mode="r")
    before = _rss_file_kib()
    assert mapped.sum() == mapped.size
    assert _rss_file_kib() - before > 32 * 1024
    release_pages(mapped)
    assert _rss_file_kib() - before < 4 * 1024
    assert mapped[-1, -1] == 1.0  # the file is untouched and maps again


@linux_only
def test_release_pages_of_a_row_block_keeps_the_other_rows(ones_file):
    mapped = np.load(ones_file, mmap_mode="r")
    half = mapped.shape[0] // 2
    before = _rss_file_kib()
    mapped.sum()
    release_pages(mapped[:half])
    remaining = _rss_file_kib() - before
    assert 24 * 1024 < remaining < 40 * 1024


def test_span_of_a_strided_view_covers_its_first_and_last_element(ones_file):
    mapped = np.load(ones_file, mmap_mode="r")
    column = mapped[10:20, 5]
    buffer, start, length = read_only_span(column)
    base = np.frombuffer(buffer, dtype=np.uint8).ctypes.data
    assert start <= column.ctypes.data - base
    assert start + length >= column[-1:].ctypes.data - base + column.itemsize
    assert read_only_span(mapped[::-1]) is None


def test_writable_private_and_plain_arrays_are_left_alone(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((1024, 512)))
    private = np.load(tmp_path / "a.npy", mmap_mode="c")
    private[:] = 7.0
    release_pages(private)
    assert np.all(private == 7.0)
    writable = np.load(tmp_path / "a.npy", mmap_mode="r+")
    assert read_only_span(writable) is None
    assert read_only_span(np.ones((4, 4))) is None
