"""Tests for the loaders, ImageArray and the atomic writers of advprune.datasets.

Every test writes small files in the real formats to a temporary directory:
CIFAR-10's binary records and pickled python batches, an ``.npz`` pool in the
published layout, and ``.npy`` pairs.
"""

import errno
import io
import os
import pickle
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from advprune import AdversarialPruner, _io
from advprune.datasets import (
    ImageArray,
    _pools,
    convert_npz_pool,
    load_cifar10,
    load_cifar10_python,
    load_npy_pair,
    load_pool,
    save_npy_chunked,
)
from advprune.training import batched_forward


def _eager(images, layout="NHWC"):
    """The documented meaning of an ImageArray, computed in one go."""
    if layout == "NHWC":
        images = images.transpose(0, 3, 1, 2)
    return images.astype(np.float32) / np.float32(255)


def _random_images(n, shape=(32, 32, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _leftovers(directory):
    return sorted(p.name for p in Path(directory).iterdir() if p.suffix == ".tmp")


# -- CIFAR-10, binary version -------------------------------------------------------


def _cifar_records(labels, seed):
    """Binary records: label byte, then R, G, B planes of 32x32."""
    images = _random_images(len(labels), (3, 32, 32), seed)
    records = np.empty((len(labels), 3073), dtype=np.uint8)
    records[:, 0] = labels
    records[:, 1:] = images.reshape(len(labels), -1)
    return records, images


@pytest.fixture
def cifar_bin(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    images, labels = [], []
    for i in range(1, 6):
        batch_labels = [(3 * i + k) % 10 for k in range(3)]
        records, batch_images = _cifar_records(batch_labels, seed=i)
        records.tofile(folder / f"data_batch_{i}.bin")
        images.append(batch_images)
        labels += batch_labels
    records, test_images = _cifar_records([9, 0], seed=99)
    records.tofile(folder / "test_batch.bin")
    return folder, np.concatenate(images), np.array(labels), test_images


def test_load_cifar10_binary_values_and_layout(cifar_bin):
    folder, images, labels, test_images = cifar_bin
    # The parent directory and the folder itself are both accepted.
    for path in (folder.parent, folder, str(folder)):
        X, y = load_cifar10(path)
        assert isinstance(X, ImageArray)
        assert X.shape == (15, 3, 32, 32) and X.dtype == np.float32
        assert y.dtype == np.int64
        np.testing.assert_array_equal(y, labels)
        np.testing.assert_array_equal(X.images, images)
        np.testing.assert_array_equal(np.asarray(X), images / np.float32(255))
    # Channel-major records: byte 1 + 1024 * c + 32 * row + col of record 4.
    raw = np.fromfile(folder / "data_batch_2.bin", dtype=np.uint8).reshape(3, 3073)
    assert X[4][1, 5, 7] == raw[1, 1 + 1024 * 1 + 32 * 5 + 7] / np.float32(255)

    X_test, y_test = load_cifar10(folder, split="test")
    assert y_test.tolist() == [9, 0]
    np.testing.assert_array_equal(X_test.images, test_images)


def test_load_cifar10_binary_truncated_or_corrupt(cifar_bin):
    folder, *_ = cifar_bin
    path = folder / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"data_batch_3\.bin.*multiple of the record"):
        load_cifar10(folder)

    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"data_batch_3\.bin.*truncated or corrupt"):
        load_cifar10(folder)

    records, _ = _cifar_records([1, 200, 2], seed=0)
    records.tofile(path)
    with pytest.raises(ValueError, match=r"data_batch_3\.bin.*record 1 has label 200"):
        load_cifar10(folder)


def test_load_cifar10_binary_bad_arguments(cifar_bin, tmp_path):
    folder, *_ = cifar_bin
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_cifar10(folder, split="validation")
    with pytest.raises(TypeError, match="path must be a str or path"):
        load_cifar10(3)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_cifar10(tmp_path / "missing")
    (folder / "data_batch_5.bin").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_5"):
        load_cifar10(folder)


# -- CIFAR-10, python version ------------------------------------------------------


def _python_batch(n, seed, *, str_keys=False):
    rng = np.random.default_rng(seed)
    batch = {
        b"batch_label": b"training batch",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    if str_keys:
        batch = {k.decode(): v for k, v in batch.items()}
    return batch


def _write_pickle(path, obj, *, numpy1_names=False):
    # Protocol 2, as the original files; the originals name numpy 1's module.
    data = pickle.dumps(obj, protocol=2)
    if numpy1_names:
        data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path.write_bytes(data)


@pytest.fixture
def cifar_py(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = [_python_batch(4, seed=i) for i in range(6)]
    for i, batch in enumerate(batches[:5], start=1):
        _write_pickle(folder / f"data_batch_{i}", batch, numpy1_names=i % 2 == 0)
    _write_pickle(folder / "test_batch", batches[5], numpy1_names=True)
    return folder, batches


def test_load_cifar10_python_values(cifar_py):
    folder, batches = cifar_py
    X, y = load_cifar10_python(folder.parent)
    assert X.shape == (20, 3, 32, 32) and y.dtype == np.int64
    data = np.concatenate([b[b"data"] for b in batches[:5]])
    np.testing.assert_array_equal(X.images, data.reshape(-1, 3, 32, 32))
    assert y.tolist() == sum((b[b"labels"] for b in batches[:5]), [])
    X_test, y_test = load_cifar10_python(folder, split="test")
    assert y_test.tolist() == batches[5][b"labels"]
    # Same layout as the binary loader: plane c of image i is bytes 1024c...
    assert X_test[2][2, 31, 31] == batches[5][b"data"][2, 3071] / np.float32(255)


def test_load_cifar10_python_str_keys_and_numpy_labels(cifar_py):
    folder, _ = cifar_py
    batch = _python_batch(3, seed=7, str_keys=True)
    batch["labels"] = np.array(batch["labels"], dtype=np.int64)
    _write_pickle(folder / "test_batch", batch)
    _, y = load_cifar10_python(folder, split="test")
    assert y.tolist() == batch["labels"].tolist()


# Numpy 1's module names, as the original files and older writers use them, can
# be put in by replacing bytes only where globals are text lines (protocols < 4).
@pytest.mark.parametrize(
    ("protocol", "numpy1_names"),
    [(p, False) for p in range(pickle.HIGHEST_PROTOCOL + 1)]
    + [(p, True) for p in range(4)],
)
def test_load_cifar10_python_reads_every_pickle_protocol(
    cifar_py, protocol, numpy1_names
):
    # Protocol 5 rebuilds arrays with numpy's _frombuffer, not _reconstruct.
    folder, _ = cifar_py
    batch = _python_batch(3, seed=8)
    batch[b"labels"] = np.array(batch[b"labels"], dtype=np.int64)
    data = pickle.dumps(batch, protocol=protocol)
    if numpy1_names:
        data = data.replace(b"numpy._core.", b"numpy.core.")
    (folder / "test_batch").write_bytes(data)
    X, y = load_cifar10_python(folder, split="test")
    np.testing.assert_array_equal(X.images.reshape(3, -1), batch[b"data"])
    assert y.tolist() == batch[b"labels"].tolist()


class _FrombufferPickler(pickle.Pickler):
    """Pickles arrays as protocol 5 does, through numpy's _frombuffer, but in a
    protocol whose globals are text lines, so that numpy 1's module name can be
    put in."""

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            frombuffer = obj.__reduce_ex__(5)[0]
            return frombuffer, (obj.tobytes(), obj.dtype, obj.shape, "C")
        return NotImplemented


def test_load_cifar10_python_reads_numpy1_frombuffer(cifar_py):
    folder, _ = cifar_py
    batch = _python_batch(2, seed=9)
    buffer = io.BytesIO()
    _FrombufferPickler(buffer, protocol=3).dump(batch)
    data = buffer.getvalue()
    assert b"numpy._core.numeric\n_frombuffer" in data
    (folder / "test_batch").write_bytes(data.replace(b"numpy._core.", b"numpy.core."))
    X, _ = load_cifar10_python(folder, split="test")
    np.testing.assert_array_equal(X.images.reshape(2, -1), batch[b"data"])


class _Exploit:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("where", ["top", "inside_list"])
def test_load_cifar10_python_refuses_malicious_pickle(cifar_py, tmp_path, where):
    folder, _ = cifar_py
    marker = tmp_path / "pwned"
    exploit = _Exploit(f"touch {marker}")
    batch = _python_batch(2, seed=0)
    if where == "top":
        payload = exploit
    else:
        batch[b"filenames"] = [b"a.png", exploit]
        payload = batch
    _write_pickle(folder / "test_batch", payload)
    with pytest.raises(ValueError, match=r"refused to unpickle .*test_batch.*system"):
        load_cifar10_python(folder, split="test")
    assert not marker.exists()
    # The payload is live: a plain unpickler runs it.
    pickle.loads((folder / "test_batch").read_bytes())
    assert marker.exists()


def test_load_cifar10_python_refuses_builtins_and_other_payloads(cifar_py):
    folder, _ = cifar_py
    path = folder / "test_batch"
    path.write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(ValueError, match="builtins.eval"):
        load_cifar10_python(folder, split="test")
    # Only latin-1 may be decoded through _codecs.encode.
    path.write_bytes(b"c_codecs\nencode\n(X\x01\x00\x00\x00aX\x04\x00\x00\x00zlibtR.")
    with pytest.raises(ValueError, match="refused"):
        load_cifar10_python(folder, split="test")
    # An object array unpickles through the allowed names but is not a batch.
    batch = _python_batch(2, seed=0)
    batch[b"data"] = np.array([[1, "a"]] * 2, dtype=object)
    _write_pickle(path, batch)
    with pytest.raises(ValueError, match="'data' must be a uint8 array"):
        load_cifar10_python(folder, split="test")


def test_load_cifar10_python_truncated_or_not_a_batch(cifar_py):
    folder, batches = cifar_py
    path = folder / "data_batch_2"
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(ValueError, match=r"data_batch_2.*truncated or corrupt"):
        load_cifar10_python(folder)
    _write_pickle(path, [1, 2, 3])
    with pytest.raises(ValueError, match=r"data_batch_2.*holds a list, not a dict"):
        load_cifar10_python(folder)
    batch = dict(batches[1])
    batch[b"labels"] = batch[b"labels"][:-1]
    _write_pickle(path, batch)
    with pytest.raises(ValueError, match="'labels' must hold 4 integers"):
        load_cifar10_python(folder)
    del batch[b"labels"]
    _write_pickle(path, batch)
    with pytest.raises(ValueError, match="no 'labels' entry"):
        load_cifar10_python(folder)


# -- .npz pools ----------------------------------------------------------------------


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_convert_npz_pool_round_trip(tmp_path, compressed, chunk_size):
    images = _random_images(23)
    labels = np.arange(23, dtype=np.int32) % 10
    save = np.savez_compressed if compressed else np.savez
    save(tmp_path / "pool.npz", image=images, label=labels)
    images_path, labels_path = convert_npz_pool(
        tmp_path / "pool.npz", tmp_path / "out" / "pool", chunk_size=chunk_size
    )
    assert images_path == tmp_path / "out" / "pool" / "images.npy"
    assert sorted(p.name for p in images_path.parent.iterdir()) == [
        "advprune-manifest.json",
        "images.npy",
        "labels.npy",
    ]
    X, y = load_pool(images_path.parent)
    assert isinstance(X.images, np.memmap) and isinstance(y, np.memmap)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(X.images, images)
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(X[3:9], _eager(images[3:9]))


def test_convert_npz_pool_custom_keys_and_overwrite(tmp_path):
    out = tmp_path / "out"
    np.savez(tmp_path / "a.npz", x=_random_images(4, seed=1), t=np.arange(4))
    convert_npz_pool(tmp_path / "a.npz", out, image_key="x", label_key="t")
    new_images = _random_images(6, seed=2)
    np.savez(tmp_path / "b.npz", x=new_images, t=np.arange(6, dtype=np.uint8))
    convert_npz_pool(tmp_path / "b.npz", out, image_key="x", label_key="t")
    X, y = load_pool(out)
    np.testing.assert_array_equal(X.images, new_images)
    assert y.tolist() == list(range(6))


def _damage(path, position, *, truncate=False):
    data = bytearray(path.read_bytes())
    if truncate:
        del data[position:]
    else:
        data[position] ^= 0xFF
    path.write_bytes(bytes(data))


def _image_data_offset(npz_path):
    with zipfile.ZipFile(npz_path) as archive:
        info = archive.getinfo("image.npy")
    # Local header (30 bytes + name + extra), then the .npy header (128 bytes).
    return info.header_offset + 30 + len(info.filename) + 20 + 128 + 50


@pytest.mark.parametrize("damage", ["truncated_archive", "flipped_pixel", "flipped_z"])
def test_convert_npz_pool_truncated_or_corrupt(tmp_path, damage):
    path = tmp_path / "pool.npz"
    if damage == "flipped_z":
        np.savez_compressed(path, image=_random_images(50), label=np.arange(50))
        _damage(path, path.stat().st_size // 3)
    else:
        np.savez(path, image=_random_images(50), label=np.arange(50))
        if damage == "truncated_archive":
            _damage(path, path.stat().st_size // 2, truncate=True)
        else:
            _damage(path, _image_data_offset(path))
    with pytest.raises(ValueError, match=r"pool\.npz.*(truncated or corrupt)"):
        convert_npz_pool(path, tmp_path / "out", chunk_size=8)
    out = tmp_path / "out"
    assert not out.exists() or not list(out.iterdir())


def test_convert_npz_pool_member_shorter_than_its_header(tmp_path):
    # A member whose header declares more rows than it holds, in a valid zip.
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        member, {"descr": "|u1", "fortran_order": False, "shape": (10, 32, 32, 3)}
    )
    member.write(_random_images(4).tobytes())
    member.seek(0)
    with zipfile.ZipFile(tmp_path / "pool.npz", "w") as archive:
        archive.writestr("image.npy", member.read())
        with archive.open("label.npy", "w") as f:
            np.save(f, np.arange(10))
    with pytest.raises(ValueError, match=r"'image' of .*pool\.npz.* is truncated"):
        convert_npz_pool(tmp_path / "pool.npz", tmp_path / "out", chunk_size=3)
    assert not list((tmp_path / "out").iterdir())


def test_convert_npz_pool_refuses_wrong_contents(tmp_path):
    path, out = tmp_path / "pool.npz", tmp_path / "out"
    images = _random_images(5)

    np.savez(path, image=images, labels=np.arange(5))
    with pytest.raises(ValueError, match=r"no array 'label'; it holds \['image'"):
        convert_npz_pool(path, out)
    np.savez(path, image=np.array([[1, "a"]], dtype=object), label=np.arange(1))
    with pytest.raises(ValueError, match="pickled Python objects"):
        convert_npz_pool(path, out)
    np.savez(path, image=images.astype(np.float32), label=np.arange(5))
    with pytest.raises(ValueError, match="must hold uint8 images"):
        convert_npz_pool(path, out)
    np.savez(path, image=np.asfortranarray(images), label=np.arange(5))
    with pytest.raises(ValueError, match="Fortran order"):
        convert_npz_pool(path, out)
    np.savez(path, image=images, label=np.arange(5.0))
    with pytest.raises(ValueError, match="integer labels"):
        convert_npz_pool(path, out)
    np.savez(path, image=images, label=np.arange(4))
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        convert_npz_pool(path, out)
    assert not out.exists()

    np.save(tmp_path / "plain.npy", images)
    with pytest.raises(ValueError, match=r"plain\.npy.*not a readable \.npz"):
        convert_npz_pool(tmp_path / "plain.npy", out)
    with pytest.raises(FileNotFoundError, match="no such file"):
        convert_npz_pool(tmp_path / "missing.npz", out)
    np.savez(path, image=images, label=np.arange(5))
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        convert_npz_pool(path, out, chunk_size=0)
    with pytest.raises(TypeError, match="chunk_size must be an int"):
        convert_npz_pool(path, out, chunk_size=2.0)
    with pytest.raises(ValueError, match="exists and is not a directory"):
        convert_npz_pool(path, path)


def _write_old_pool(out):
    out.mkdir()
    np.save(out / "images.npy", np.zeros((2, 32, 32, 3), np.uint8))
    np.save(out / "labels.npy", np.array([7, 7]))


def _assert_old_pool_intact(out):
    X, y = load_pool(out)
    assert X.shape[0] == 2 and y.tolist() == [7, 7]
    assert _leftovers(out) == []


@pytest.mark.parametrize("failing", ["image", "label"])
def test_convert_npz_pool_is_atomic(tmp_path, monkeypatch, failing):
    """A failure midway leaves the previous pool as it was and no temp files."""
    np.savez(tmp_path / "pool.npz", image=_random_images(30), label=np.arange(30))
    out = tmp_path / "out"
    _write_old_pool(out)
    chunks = _pools._NpzMember.chunks
    written = []

    def failing_chunks(member, rows):
        for chunk in chunks(member, rows):
            written.append(member.where)
            yield chunk
            if f"'{failing}'" in member.where:
                raise RuntimeError("disk unplugged")

    monkeypatch.setattr(_pools._NpzMember, "chunks", failing_chunks)
    with pytest.raises(RuntimeError, match="disk unplugged"):
        convert_npz_pool(tmp_path / "pool.npz", out, chunk_size=4)
    # The failure happened after data had been written, not before.
    assert any(f"'{failing}'" in where for where in written)
    _assert_old_pool_intact(out)


def test_convert_npz_pool_checks_disk_space_first(tmp_path, monkeypatch):
    np.savez(tmp_path / "pool.npz", image=_random_images(30), label=np.arange(30))
    out = tmp_path / "out"
    _write_old_pool(out)

    def full_disk(path):
        return type("usage", (), {"free": 1000})()

    monkeypatch.setattr(_io.shutil, "disk_usage", full_disk)
    with pytest.raises(OSError, match="not enough free disk space") as info:
        convert_npz_pool(tmp_path / "pool.npz", out)
    assert info.value.errno == errno.ENOSPC
    _assert_old_pool_intact(out)


# -- save_npy_chunked --------------------------------------------------------------


def test_save_npy_chunked_writes_a_memmappable_file(tmp_path):
    blocks = [np.arange(6).reshape(3, 2), np.arange(6, 10).reshape(2, 2)]
    path = save_npy_chunked(
        str(tmp_path / "a.npy"), iter(blocks), shape=(5, 2), dtype=float
    )
    assert path == tmp_path / "a.npy"
    loaded = np.load(path, mmap_mode="r")
    assert isinstance(loaded, np.memmap) and loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded, np.arange(10).reshape(5, 2))
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("blocks", "error", "match"),
    [
        ([np.zeros((2, 3))], ValueError, r"blocks of rows of shape \(k, 2\)"),
        ([np.zeros((3, 2), np.float32)] * 2, ValueError, "more than the 5 rows"),
        ([np.zeros((3, 2), np.float32)], ValueError, "hold 3 rows; shape"),
        ([np.zeros((5, 2), dtype=np.int64)], TypeError, "without changing values"),
    ],
)
def test_save_npy_chunked_bad_blocks_leave_nothing(tmp_path, blocks, error, match):
    path = tmp_path / "a.npy"
    np.save(path, np.ones(3))
    with pytest.raises(error, match=match):
        save_npy_chunked(path, blocks, shape=(5, 2), dtype=np.float32)
    np.testing.assert_array_equal(np.load(path), np.ones(3))
    assert _leftovers(tmp_path) == []


def test_save_npy_chunked_output_that_cannot_be_written(tmp_path):
    blocks = [np.zeros(2)]
    with pytest.raises(ValueError, match="does not exist"):
        save_npy_chunked(tmp_path / "no" / "a.npy", blocks, shape=(2,), dtype=float)
    with pytest.raises(ValueError, match="is a directory"):
        save_npy_chunked(tmp_path, blocks, shape=(2,), dtype=float)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="does not exist"):
        save_npy_chunked(tmp_path / "file" / "a.npy", blocks, shape=(2,), dtype=float)
    with pytest.raises(TypeError, match="must not hold Python objects"):
        save_npy_chunked(tmp_path / "a.npy", blocks, shape=(2,), dtype=object)
    with pytest.raises(TypeError, match="shape must be a tuple of ints"):
        save_npy_chunked(tmp_path / "a.npy", blocks, shape=(2.0,), dtype=float)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# -- .npy pairs ----------------------------------------------------------------------


@pytest.fixture
def npy_pair(tmp_path):
    X = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    y = np.array([0, 1, 0, 1, 2, 2])
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    return tmp_path / "X.npy", tmp_path / "y.npy", X, y


def test_load_npy_pair_memory_maps(npy_pair):
    X_path, y_path, X, y = npy_pair
    X_loaded, y_loaded = load_npy_pair(X_path, y_path)
    assert isinstance(X_loaded, np.memmap) and X_loaded.mode == "r"
    np.testing.assert_array_equal(X_loaded, X)
    np.testing.assert_array_equal(y_loaded, y)


def test_load_npy_pair_truncated_corrupt_or_pickled(npy_pair, tmp_path):
    X_path, y_path, X, _ = npy_pair
    good = X_path.read_bytes()
    X_path.write_bytes(good[:-9])
    with pytest.raises(ValueError, match=r"X_path: cannot read '.*X\.npy'.*truncated"):
        load_npy_pair(X_path, y_path)
    X_path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"X_path: cannot read '.*X\.npy'"):
        load_npy_pair(X_path, y_path)
    X_path.write_bytes(good[:6] + b"\x07" + good[7:])  # unknown format version
    with pytest.raises(ValueError, match=r"X_path: cannot read '.*X\.npy'"):
        load_npy_pair(X_path, y_path)
    X_path.write_bytes(pickle.dumps(X))
    with pytest.raises(ValueError, match=r"X_path: .*X\.npy.*pickled"):
        load_npy_pair(X_path, y_path)
    np.save(y_path, np.array([0, "a"], dtype=object), allow_pickle=True)
    np.save(X_path, X)
    with pytest.raises(ValueError, match=r"y_path: cannot read '.*y\.npy'"):
        load_npy_pair(X_path, y_path)
    np.savez(tmp_path / "y.npz", y=np.arange(6))
    with pytest.raises(ValueError, match=r"y_path: .*y\.npz.* is an \.npz archive"):
        load_npy_pair(X_path, tmp_path / "y.npz")


def test_load_npy_pair_validates_shapes_and_dtypes(npy_pair, tmp_path):
    X_path, y_path, X, y = npy_pair
    np.save(tmp_path / "y5.npy", y[:5])
    with pytest.raises(ValueError, match="holds 6 samples, .*y5.npy' 5 labels"):
        load_npy_pair(X_path, tmp_path / "y5.npy")
    np.save(tmp_path / "yf.npy", y.astype(float))
    with pytest.raises(ValueError, match="y_path: .*integer class labels"):
        load_npy_pair(X_path, tmp_path / "yf.npy")
    np.save(tmp_path / "X1.npy", X[:, 0])
    with pytest.raises(ValueError, match="X_path: .*at least 2 dimensions"):
        load_npy_pair(tmp_path / "X1.npy", y_path)
    np.save(tmp_path / "Xc.npy", X.astype(np.complex64))
    with pytest.raises(ValueError, match="X_path: .*numeric array"):
        load_npy_pair(tmp_path / "Xc.npy", y_path)
    with pytest.raises(FileNotFoundError, match="y_path: no such file"):
        load_npy_pair(X_path, tmp_path / "missing.npy")
    with pytest.raises(ValueError, match=r"images\.npy' must hold uint8 images"):
        np.save(tmp_path / "images.npy", X)
        np.save(tmp_path / "labels.npy", y)
        load_pool(tmp_path)


_VALID_NPY = None


def _valid_npy_bytes():
    global _VALID_NPY
    if _VALID_NPY is None:
        with tempfile.TemporaryFile() as f:
            np.save(f, np.arange(24, dtype=np.int16).reshape(6, 4))
            f.seek(0)
            _VALID_NPY = f.read()
    return _VALID_NPY


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    position=st.integers(0, 175),
    value=st.integers(0, 255),
    truncate=st.booleans(),
)
def test_load_npy_pair_damaged_files_only_raise_value_error(position, value, truncate):
    """Any truncation or changed byte: a correct load or a ValueError, nothing else."""
    data = bytearray(_valid_npy_bytes())
    if truncate:
        del data[position:]
    else:
        data[position] = value
    with tempfile.TemporaryDirectory() as tmp:
        X_path, y_path = Path(tmp) / "X.npy", Path(tmp) / "y.npy"
        X_path.write_bytes(bytes(data))
        np.save(y_path, np.arange(6))
        try:
            X, y = load_npy_pair(X_path, y_path)
        except ValueError as exc:
            assert "X.npy" in str(exc)
        else:
            assert X.shape[0] == len(y) == 6 and X.ndim >= 2
            del X, y


@settings(max_examples=60, deadline=None)
@given(position=st.integers(0, 2000), value=st.integers(0, 255))
def test_restricted_unpickler_damaged_batches_only_raise_value_error(position, value):
    data = bytearray(pickle.dumps(_python_batch(2, seed=0), protocol=2))
    if position < len(data):
        data[position] = value
    else:
        del data[position - len(data) :]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "test_batch").write_bytes(bytes(data))
        try:
            X, y = load_cifar10_python(tmp, split="test")
        except ValueError as exc:
            assert "test_batch" in str(exc)
        else:
            assert X.shape == (2, 3, 32, 32) and y.min() >= 0 and y.max() <= 9


# -- ImageArray ----------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_image_array_indexing_equals_eager_conversion(layout):
    images = _random_images(9, (5, 4, 3))
    X = ImageArray(images, layout=layout)
    eager = _eager(images, layout)
    assert X.shape == eager.shape and X.dtype == np.float32
    assert len(X) == 9 and X.ndim == 4 and X.size == eager.size
    mask = np.arange(9) % 3 == 0
    keys = [
        0,
        -1,
        np.int64(4),
        np.array(2),
        slice(None),
        slice(2, 7),
        slice(None, None, -2),
        np.array([8, 1, 1, 3]),
        [0, 5],
        [],
        mask,
        (slice(1, 4), 0),
        (np.array([2, 6]), slice(None), 1),
        (3, 2, 1, 0),
        (),
    ]
    for key in keys:
        out = X[key]
        expected = eager[key]
        assert isinstance(out, np.ndarray | np.floating), key
        assert np.asarray(out).dtype == np.float32, key
        np.testing.assert_array_equal(out, expected, err_msg=repr(key))
    np.testing.assert_array_equal(np.asarray(X), eager)
    np.testing.assert_array_equal(np.asarray(X, dtype=np.float64), eager)
    assert X.images is images


def test_image_array_refuses_bad_input_and_indices():
    images = _random_images(4, (3, 3, 1))
    X = ImageArray(images)
    with pytest.raises(IndexError):
        X[4]
    with pytest.raises(IndexError, match="1-D integer array or a 1-D boolean mask"):
        X[np.array([[0, 1]])]
    with pytest.raises(IndexError, match="selects rows by"):
        X[np.array([0.5])]
    with pytest.raises(IndexError, match="selects rows by"):
        X[True]
    with pytest.raises(IndexError):
        X[np.ones(3, dtype=bool)]
    with pytest.raises(ValueError, match="cannot avoid a copy"):
        np.asarray(X, copy=False)
    with pytest.raises(TypeError, match="dtype uint8"):
        ImageArray(images.astype(np.float32))
    with pytest.raises(TypeError, match="numpy array"):
        ImageArray(images.tolist())
    with pytest.raises(ValueError, match="must be 4-D"):
        ImageArray(images[..., 0])
    with pytest.raises(ValueError, match="layout must be"):
        ImageArray(images, layout="NWHC")


@settings(max_examples=80, deadline=None)
@given(
    array=hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.int8, np.uint16, np.float32, np.bool_]),
        shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=3),
    ),
    layout=st.sampled_from(["NHWC", "NCHW", "nhwc", None]),
)
def test_image_array_construction_only_raises_documented_errors(array, layout):
    try:
        X = ImageArray(array, layout=layout)
    except TypeError:
        assert array.dtype != np.uint8
    except ValueError:
        assert array.ndim != 4 or layout not in ("NHWC", "NCHW")
    else:
        assert array.dtype == np.uint8 and array.ndim == 4
        np.testing.assert_array_equal(np.asarray(X), _eager(array, layout))


_IMAGES = _random_images(6, (2, 3, 2))


@settings(max_examples=150, deadline=None)
@given(
    key=st.one_of(
        st.integers(-9, 9),
        st.slices(9),
        st.lists(st.integers(-9, 9), max_size=8).map(np.array),
        st.lists(st.booleans(), min_size=5, max_size=7).map(np.array),
    )
)
def test_image_array_row_keys_match_eager_or_raise_index_error(key):
    eager = _eager(_IMAGES)
    try:
        expected = eager[key]
    except IndexError:
        with pytest.raises(IndexError):
            ImageArray(_IMAGES)[key]
    else:
        np.testing.assert_array_equal(ImageArray(_IMAGES)[key], expected)


def test_image_array_on_read_only_memmap(tmp_path):
    images = _random_images(7)
    np.save(tmp_path / "images.npy", images)
    mm = np.load(tmp_path / "images.npy", mmap_mode="r")
    X = ImageArray(mm)
    rows = X[2:5]
    assert rows.flags.writeable
    rows[:] = 0  # a copy: the file is untouched
    np.testing.assert_array_equal(X[2:5], _eager(images[2:5]))
    assert "images.npy" in repr(X)


def test_image_array_pickles_memmap_by_reference(tmp_path):
    images = _random_images(50)
    np.save(tmp_path / "images.npy", images)
    mm = np.load(tmp_path / "images.npy", mmap_mode="r")
    for view, expected in [(mm, images), (mm[10:30], images[10:30])]:
        X = ImageArray(view, release_pages=False)
        data = pickle.dumps(X)
        assert len(data) < 1000  # the path, not 150 kB of pixels
        copy = pickle.loads(data)
        assert isinstance(copy.images, np.memmap)
        assert copy.images.filename == os.fspath(mm.filename)
        assert not copy.images.flags.writeable
        np.testing.assert_array_equal(copy.images, expected)
        np.testing.assert_array_equal(copy[:], X[:])

    # In-memory, strided and copy-on-write arrays pickle by value.
    copy_on_write = np.load(tmp_path / "images.npy", mmap_mode="c")
    copy_on_write[0] = 0
    for array in (images, mm[::2], copy_on_write):
        data = pickle.dumps(ImageArray(array, layout="NHWC"))
        assert len(data) > array.nbytes
        np.testing.assert_array_equal(pickle.loads(data).images, array)


def _rss_file_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssFile:"):
                return int(line.split()[1]) / 1024
    pytest.skip("no RssFile in /proc/self/status")


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/self/status"
)
def test_image_array_releases_pages_of_read_only_maps(tmp_path):
    n = 16384  # 48 MiB of images
    save_npy_chunked(
        tmp_path / "images.npy",
        (np.full((1024, 32, 32, 3), i, np.uint8) for i in range(n // 1024)),
        shape=(n, 32, 32, 3),
        dtype=np.uint8,
    )
    grown = {}
    for release in (False, True):
        X = ImageArray(
            np.load(tmp_path / "images.npy", mmap_mode="r"), release_pages=release
        )
        before = _rss_file_mib()
        for start in range(0, n, 2048):
            assert X[start : start + 2048][0, 0, 0, 0] == (start // 1024) / np.float32(
                255
            )
        grown[release] = _rss_file_mib() - before
        del X
    assert grown[False] > 40
    assert grown[True] < 8


def test_image_array_index_arrays_and_masks_of_released_maps(tmp_path):
    # Index arrays and masks of a released memory map are read in blocks; the
    # result must be the same as numpy's fancy indexing of the stored images.
    images = np.random.default_rng(0).integers(0, 256, (700, 4, 4, 3), np.uint8)
    np.save(tmp_path / "images.npy", images)
    X = ImageArray(np.load(tmp_path / "images.npy", mmap_mode="r"))
    expected = images.transpose(0, 3, 1, 2) / np.float32(255)
    rows = np.random.default_rng(1).permutation(700)[:500]
    rows[:3] = [-1, 5, 5]  # negative and repeated rows, unsorted
    np.testing.assert_array_equal(X[rows], expected[rows])
    np.testing.assert_array_equal(X[rows, 2], expected[rows, 2])
    mask = np.random.default_rng(2).random(700) < 0.4
    np.testing.assert_array_equal(X[mask], expected[mask])
    assert X[np.array([], dtype=np.intp)].shape == (0, 3, 4, 4)
    with pytest.raises(IndexError, match="boolean index of length 699"):
        X[mask[:-1]]
    with pytest.raises(IndexError):
        X[np.array([700])]


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/self/status"
)
def test_scattered_rows_never_map_most_of_the_file(tmp_path, monkeypatch):
    # The kernel maps whole cached folios around each fault, so 2,000 random rows
    # of a 3 GB pool mapped 2.2 GB at once; ImageArray reads such indices in
    # blocks and releases the pages after each. Largest mapping seen at a release:
    n = 65536  # 192 MiB of images
    save_npy_chunked(
        tmp_path / "images.npy",
        (np.full((4096, 32, 32, 3), i, np.uint8) for i in range(n // 4096)),
        shape=(n, 32, 32, 3),
        dtype=np.uint8,
    )
    X = ImageArray(np.load(tmp_path / "images.npy", mmap_mode="r"))
    rows = np.sort(np.random.default_rng(0).choice(n, 2000, replace=False))
    before = _rss_file_mib()
    mapped = []
    release = ImageArray._release

    def measured_release(self):
        mapped.append(_rss_file_mib() - before)
        release(self)

    monkeypatch.setattr(ImageArray, "_release", measured_release)
    out = X[rows]
    expected = (rows // 4096).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(out[:, 0, 0, 0], expected)
    assert len(mapped) == 125  # ceil(2000 / 16) blocks
    assert max(mapped) < 24  # measured: 6 MiB (with 128-row blocks: under 96)


# -- ImageArray as the estimators' X -------------------------------------------------


def test_pruner_on_image_array_equals_pruner_on_eager_floats():
    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    images = (
        rng.integers(0, 120, (60, 8, 8, 1)) + 100 * y[:, None, None, None]
    ).astype(np.uint8)
    X_lazy, X_eager = ImageArray(images), _eager(images)
    params = dict(
        prune_ratio=0.5,
        importance="mean_loss",
        extrapolation="knn",
        subset_size=0.5,
        epochs=2,
        attack_steps=1,
        eps=0.05,
        batch_size=16,
        chunk_size=7,  # several chunks, the last one short
        device="cpu",
        random_state=0,
    )
    lazy = AdversarialPruner(**params).fit(X_lazy, y)
    eager = AdversarialPruner(**params).fit(X_eager, y)
    assert not lazy.scored_mask_.all()  # extrapolation ran on the lazy rows
    np.testing.assert_array_equal(lazy.scores_, eager.scores_)
    np.testing.assert_array_equal(lazy.get_support(), eager.get_support())
    np.testing.assert_array_equal(
        lazy.score_samples(X_lazy), eager.score_samples(X_eager)
    )

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    np.testing.assert_array_equal(
        batched_forward(model, X_lazy, batch_size=9),
        batched_forward(model, X_eager, batch_size=9),
    )
