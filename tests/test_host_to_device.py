"""Moving data between the host and the device: batches read ahead on host
threads, outputs streamed into a given array, consecutive rows of an
ImageArray read as one block, and where the trainer draws its random starts.

The GPU side (pinned copies, channels-last training, resuming a CUDA run) is
measured by benchmarks/gpu.py on a lent GPU; these tests pin down what the
CPU can check of the same code.
"""

import threading
import time

import numpy as np
import pytest
import torch

from advprune import AdversarialPruner
from advprune.datasets import ImageArray
from advprune.embedding import EmbeddedRows, embed
from advprune.training import AdversarialTrainer, batched_forward, torch_generator
from advprune.training._checkpoint import read_checkpoint
from advprune.training._device import read_batches


def test_read_batches_keeps_order_and_tuples_with_threads():
    X = np.arange(100, dtype=np.float32).reshape(50, 2)
    y = np.arange(50)
    slices = [slice(start, start + 7) for start in range(0, 50, 7)]
    for n_workers in (0, 3):
        got = list(read_batches(lambda s: (X[s], y[s]), slices, "cpu", n_workers))
        assert np.array_equal(np.concatenate([x.numpy() for x, _ in got]), X)
        assert np.array_equal(np.concatenate([t.numpy() for _, t in got]), y)
        assert got[0][1].dtype == torch.int64


def test_read_batches_reads_ahead_of_the_consumer_but_boundedly():
    read, lock = [], threading.Lock()

    def record(item):
        with lock:
            read.append(item)
        return np.zeros(1, np.float32)

    def reads():
        with lock:
            return len(read)

    batches = read_batches(record, range(20), "cpu", n_workers=2)
    next(batches)
    # While the consumer holds the first batch, the threads read on: twice
    # their number of items in flight, and no more.
    deadline = time.monotonic() + 30
    while reads() < 1 + 2 * 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert reads() == 1 + 2 * 2
    assert len(list(batches)) == 19
    assert sorted(read) == list(range(20))


def test_read_batches_stops_cleanly_and_passes_errors_on():
    def failing(item):
        if item == 3:
            raise OSError("disk gone")
        return np.zeros(1, np.float32)

    with pytest.raises(OSError, match="disk gone"):
        list(read_batches(failing, range(10), "cpu", n_workers=2))
    batches = read_batches(failing, range(10), "cpu", n_workers=2)
    next(batches)
    batches.close()  # leaving early joins the threads without raising
    assert not [t for t in threading.enumerate() if t.name.startswith("advprune-read")]


def test_batched_forward_threads_and_out_give_the_model_outputs(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(53, 4)).astype(np.float32)
    model = torch.nn.Linear(4, 3)
    with torch.no_grad():
        expected = model(torch.from_numpy(X)).numpy()
    for n_workers in (0, 3):
        got = batched_forward(model, X, batch_size=8, n_workers=n_workers)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    out = np.lib.format.open_memmap(
        tmp_path / "out.npy", mode="w+", dtype=np.float32, shape=(53, 3)
    )
    assert batched_forward(model, X, batch_size=8, out=out) is out
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-6, atol=1e-6)


def test_batched_forward_never_changes_the_callers_array():
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    before = X.copy()

    def zeroing(model, x):
        return model(x.mul_(0))  # a transform that works in place

    out = batched_forward(torch.nn.Identity(), X, batch_size=3, transform=zeroing)
    np.testing.assert_array_equal(X, before)
    assert not out.any()
    # A view with negative strides is read as well.
    np.testing.assert_array_equal(
        batched_forward(torch.nn.Identity(), X[::-1], batch_size=3), before[::-1]
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_workers": -1}, "n_workers must be None or an int >= 0; got -1"),
        ({"n_workers": 1.5}, "n_workers must be None or an int >= 0; got 1.5"),
        ({"out": np.zeros((4, 3), np.float32)}, r"out must have one row per sample"),
        ({"batch_size": 0}, "batch_size must be an int >= 1; got 0"),
    ],
)
def test_batched_forward_names_bad_arguments_before_any_work(kwargs, match):
    model = torch.nn.Linear(4, 3)
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    with pytest.raises(ValueError, match=match):
        batched_forward(model, np.zeros((5, 4), np.float32), **kwargs)
    assert not calls


def test_consecutive_rows_of_an_image_array_read_as_one_block(tmp_path, monkeypatch):
    images = np.random.default_rng(1).integers(0, 256, (10, 4, 4, 3), dtype=np.uint8)
    np.save(tmp_path / "pool.npy", images)
    X = ImageArray(np.load(tmp_path / "pool.npy", mmap_mode="r"))
    gathered = []
    gather = ImageArray._gather
    monkeypatch.setattr(
        ImageArray,
        "_gather",
        lambda self, rows: gathered.append(rows) or gather(self, rows),
    )
    for rows in (np.arange(2, 7), np.arange(10), np.array([3, 4, 6]), np.array([9, 8])):
        expected = np.moveaxis(images[rows], -1, 1) / np.float32(255)
        np.testing.assert_array_equal(X[rows], expected)
    # Only the scattered ones went row block by row block.
    assert [rows.tolist() for rows in gathered] == [[3, 4, 6], [9, 8]]
    np.testing.assert_array_equal(X[np.array([-2, -1])], X[8:10])
    np.testing.assert_array_equal(X[np.arange(3, 6, dtype=np.int8)], X[3:6])
    with pytest.raises(IndexError):
        X[np.arange(8, 11)]  # past the end raises, as numpy does, not a short read


class _CountingRows:
    """An array-like that records how many rows each read takes."""

    def __init__(self, X):
        self.X, self.reads = X, []
        self.shape = X.shape

    def __len__(self):
        return len(self.X)

    def __getitem__(self, rows):
        out = self.X[rows]
        self.reads.append(len(out))
        return out


def test_embedded_rows_and_embed_read_a_module_lazily_and_into_out():
    images = np.random.default_rng(2).integers(0, 256, (40, 4, 4, 3), dtype=np.uint8)
    X = ImageArray(images)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 5)).eval()
    with torch.no_grad():
        expected = module(torch.from_numpy(np.asarray(X))).numpy()
    counted = _CountingRows(X)
    E = EmbeddedRows(counted, module, batch_size=7)
    masks = (
        slice(3, 30),
        np.arange(10, 20),
        np.array([5, 1, 30]),
        np.arange(40) % 3 == 0,
    )
    for rows in masks:
        np.testing.assert_allclose(E[rows], expected[rows], atol=1e-6)
    # The rows are read a batch at a time, never a whole selection at once.
    assert max(counted.reads) <= 7
    with pytest.raises(IndexError, match="boolean index of length 39"):
        E[np.ones(39, dtype=bool)]
    out = np.full((40, 5), np.nan, np.float32)
    assert embed(module, X, batch_size=7, out=out) is out
    np.testing.assert_allclose(out, expected, atol=1e-6)
    raw = np.full((40, 48), np.nan, np.float32)
    assert embed("raw", X, out=raw) is raw
    np.testing.assert_array_equal(raw, np.asarray(X).reshape(40, -1))


def test_a_module_embedding_is_checked_batch_by_batch():
    X = np.random.default_rng(6).normal(size=(20, 3)).astype(np.float32)
    X[17, 0] = np.inf  # in the last batch only

    with pytest.raises(ValueError, match="NaN or infinite features"):
        embed(torch.nn.Linear(3, 2), X, batch_size=8)

    class TwoRowsEach(torch.nn.Module):
        def forward(self, x):
            return x.repeat(2, 1)

    with pytest.raises(ValueError, match="one row per sample: 8 rows"):
        embed(TwoRowsEach(), X, batch_size=8)
    # A module of one feature per sample returns a column.
    assert embed(torch.nn.Flatten(0), X[:16, :1], batch_size=8).shape == (16, 1)


def test_pruner_embed_streams_a_network_embedding_without_scanning_images(
    monkeypatch, tmp_path
):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (60, 8, 8, 3), dtype=np.uint8)
    y = np.arange(60) % 3
    pruner = AdversarialPruner(
        model="small-cnn",
        subset_size=0.5,
        epochs=1,
        min_steps=None,
        batch_size=16,
        chunk_size=7,
        device="cpu",
        random_state=0,
    ).fit(ImageArray(images), y)
    chunked = EmbeddedRows(ImageArray(images), pruner.embedding_)[:]

    def scanned(*args, **kwargs):
        raise AssertionError("scanned")

    monkeypatch.setattr("advprune.pruning.scan_rows", scanned)
    out = np.lib.format.open_memmap(
        tmp_path / "E.npy", mode="w+", dtype=np.float32, shape=chunked.shape
    )
    # uint8 images lie in [0, 1]: nothing to scan, and the embedding streams
    # into out rather than chunk by chunk.
    assert pruner.embed(ImageArray(images), out=out) is out
    np.testing.assert_allclose(np.asarray(out), chunked, atol=1e-5)
    # Any other array is still scanned for NaN and infinity first.
    with pytest.raises(AssertionError, match="scanned"):
        pruner.embed(np.asarray(ImageArray(images)))


def _toy_run(epochs):
    X = np.random.default_rng(4).uniform(size=(32, 2)).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(np.int64)
    torch.manual_seed(0)
    trainer = AdversarialTrainer(
        torch.nn.Linear(2, 2),
        eps=0.05,
        epochs=epochs,
        batch_size=8,
        device="cpu",
        random_state=0,
    )
    return trainer, X, y


def test_the_trainer_draws_random_starts_from_its_own_generator_on_the_cpu():
    trainer, X, y = _toy_run(epochs=1)
    trainer.fit(X, y, record=None)
    # On the CPU one stream serves both, as before the attack generator
    # existed: CPU runs are unchanged.
    assert trainer.attack_generator_ is trainer.generator_
    assert torch_generator(0, device="cpu").device == torch.device("cpu")


def test_a_checkpoint_of_the_former_format_is_refused_clearly(tmp_path):
    def fit():
        trainer, X, y = _toy_run(epochs=2)
        trainer.fit(X, y, record=None, checkpoint_dir=tmp_path)

    fit()
    path = tmp_path / "checkpoint.pt"
    assert "attack_generator" in read_checkpoint(path)
    record = torch.load(path, weights_only=True)
    record["format"] = 1  # written before the attack generator was saved
    torch.save(record, path)
    with pytest.raises(ValueError, match="not a checkpoint of this version"):
        fit()
