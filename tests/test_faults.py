"""Fault injection: damaged checkpoints, killed and interrupted processes, a full
file system, every failure of the command line, and random parameters of the
estimators. Each failure must be clear (a ValueError or one line and an exit
status, naming what is wrong), early (before training) and clean (no partial
or temporary file left)."""

import errno
import functools
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression
from sklearn.neighbors import KNeighborsRegressor

import advprune._io
from advprune import AdversarialClassifier, AdversarialPruner, ImportanceExtrapolator
from advprune._io import remove_stale_temporaries, replacing
from advprune.cli import main
from advprune.datasets import _pools as datasets_pools
from advprune.datasets import convert_npz_pool, load_pool
from advprune.models import MLP
from advprune.scores import SCORES
from advprune.training import AdversarialTrainer, Callback, RandomCropFlip
from advprune.training._checkpoint import read_checkpoint
from benchmarks.faults import write_bad_inputs

POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="signals are POSIX")


def temporaries(directory):
    return sorted(p.name for p in Path(directory).rglob("*.tmp"))


def assert_one_line(stderr, status, expected, *fragments):
    """The command line's contract: one line on stderr, a documented status."""
    assert status == expected, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("advprune: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], stderr


def run_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "advprune.cli", *map(str, args)],
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


# -- checkpoints ----------------------------------------------------------------


class _StopAfter(Callback):
    """Ends the run, as a crash would, once epoch ``epoch`` is saved."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch, **kwargs):
        if epoch == self.epoch + 1:
            raise KeyboardInterrupt


def _toy_run(checkpoint_dir=None, callbacks=(), **params):
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(96, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 1).astype(np.int64)
    torch.manual_seed(0)
    trainer = AdversarialTrainer(
        MLP(6, 2, hidden_sizes=(16,)),
        **{
            "eps": 0.1,
            "attack_steps": 1,
            "epochs": 4,
            "batch_size": 32,
            "device": "cpu",
            "random_state": 0,
            **params,
        },
    )
    dynamics = trainer.fit(
        X,
        y,
        record="epoch",
        record_probas=True,
        callbacks=callbacks,
        checkpoint_dir=checkpoint_dir,
    )
    return dynamics, trainer


@pytest.fixture(scope="module")
def mid_run(tmp_path_factory):
    """An uninterrupted run, and the checkpoint of the same run after 2 of 4
    epochs."""
    directory = tmp_path_factory.mktemp("mid_run")
    reference, _ = _toy_run()
    with pytest.raises(KeyboardInterrupt):
        _toy_run(directory, callbacks=[_StopAfter(1)])
    assert read_checkpoint(directory / "checkpoint.pt")["epoch"] == 1
    return reference, (directory / "checkpoint.pt").read_bytes()


def _resume(directory, data, **params):
    directory.mkdir()
    (directory / "checkpoint.pt").write_bytes(data)
    return _toy_run(directory, **params)[0]


def _assert_same(dynamics, reference):
    for name in ("adversarial", "clean", "adversarial_probas", "clean_probas"):
        np.testing.assert_array_equal(getattr(dynamics, name), getattr(reference, name))


def test_random_bit_flips_are_refused_or_resume_identically(mid_run, tmp_path):
    reference, data = mid_run
    rng = np.random.default_rng(12)
    for i, bit in enumerate(rng.integers(0, 8 * len(data), size=24)):
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << (bit % 8)
        directory = tmp_path / f"flip{i}"
        try:
            dynamics = _resume(directory, bytes(damaged))
        except ValueError as exc:
            assert str(directory / "checkpoint.pt") in str(exc)
            assert "Delete it to start the run over" in str(exc)
        else:
            # A bit the reader never uses (a zip header's timestamp, say).
            _assert_same(dynamics, reference)


def _stored_state(data):
    """The bytes of the run's state inside a checkpoint, and their digest."""
    record = torch.load(io.BytesIO(data), weights_only=True)
    return record["state"].numpy().tobytes(), record["sha256"]


def _without_digest(data):
    """The run's state saved as the previous version saved it: no digest."""
    payload, _ = _stored_state(data)
    return payload


DAMAGE = {
    "empty": lambda data: b"",
    "truncated": lambda data: data[: len(data) // 2],
    "last byte cut": lambda data: data[:-1],
    "not a checkpoint": lambda data: b"not a checkpoint\n" * 10,
    "no digest": _without_digest,
    "digest edited": lambda data: data.replace(
        _stored_state(data)[1].encode(), b"0" * 64, 1
    ),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_checkpoints_are_refused_naming_the_file(mid_run, tmp_path, damage):
    _, data = mid_run
    damaged = DAMAGE[damage](data)
    with pytest.raises(ValueError) as info:
        _resume(tmp_path / "run", damaged)
    message = str(info.value)
    assert str(tmp_path / "run" / "checkpoint.pt") in message
    assert "is damaged" in message and "Delete it" in message
    # Left as it was: what to do with it is the user's choice.
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == damaged


@pytest.mark.parametrize(
    "change",
    [{"verbose": True}, {"device": "auto"}, {"device": torch.device("cpu")}],
    ids=["verbose", "auto", "torch.device"],
)
def test_the_same_run_resumes_whatever_the_spelling(mid_run, tmp_path, change):
    if change.get("device") == "auto" and torch.cuda.is_available():
        pytest.skip("'auto' is CUDA here, another device type than the checkpoint's")
    reference, data = mid_run
    _assert_same(_resume(tmp_path / "run", data, **change), reference)


def test_a_changed_parameter_is_another_run(mid_run, tmp_path):
    _, data = mid_run
    with pytest.raises(ValueError, match="different run"):
        _resume(tmp_path / "run", data, eps=0.2)


def _mirror(x, generator):
    return x.flip(-1)


def _unchanged(x, generator):
    return x


def _shift(x, generator, *, by):
    return x + by


class _AsImages:
    """An image augmentation applied to the toy rows of 6 features as 1x2x3
    images; its repr is that of the augmentation, so its identity too."""

    def __init__(self, augment):
        self.augment = augment

    def __call__(self, x, generator):
        return self.augment(x.reshape(-1, 1, 2, 3), generator).reshape(x.shape)

    def __repr__(self):
        return f"_AsImages({self.augment!r})"


AUGMENTS = {
    "function": (_mirror, _mirror, _unchanged),
    "partial": (
        functools.partial(_shift, by=0.0),
        functools.partial(_shift, by=0.0),
        functools.partial(_shift, by=0.01),
    ),
    "instance": (
        _AsImages(RandomCropFlip(padding=1)),
        _AsImages(RandomCropFlip(padding=1)),
        _AsImages(RandomCropFlip(padding=2)),
    ),
}


@pytest.mark.parametrize("kind", AUGMENTS)
def test_an_augmented_run_resumes_with_the_same_augment_only(tmp_path, kind):
    # Each process builds its own callable: resuming must not need the object
    # of the first run, whose repr holds a memory address.
    augment, same, other = AUGMENTS[kind]
    reference, _ = _toy_run(augment=augment)
    with pytest.raises(KeyboardInterrupt):
        _toy_run(tmp_path, callbacks=[_StopAfter(1)], augment=augment)
    _assert_same(_toy_run(tmp_path, augment=same)[0], reference)
    with pytest.raises(ValueError, match="different run"):
        _toy_run(tmp_path, augment=other)


def test_temporaries_of_killed_saves_are_removed_at_the_next_start(mid_run, tmp_path):
    fcntl = pytest.importorskip("fcntl", reason="advisory locks are POSIX")
    reference, data = mid_run
    run = tmp_path / "run"
    run.mkdir()
    # What a save killed with SIGKILL leaves: a hidden, unlocked, partial file.
    (run / ".checkpoint.pt.0123abcd.tmp").write_bytes(data[:1000])
    # Named alike, but no temporary file of advprune's.
    (run / ".checkpoint.pt.notmine.tmp").write_bytes(b"")
    # A save in progress, in another process, holds its file locked.
    live = run / ".checkpoint.pt.89abcdef.tmp"
    live.write_bytes(b"")
    with open(live, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        (run / "checkpoint.pt").write_bytes(data)
        _assert_same(_toy_run(run)[0], reference)
        assert temporaries(run) == [
            ".checkpoint.pt.89abcdef.tmp",
            ".checkpoint.pt.notmine.tmp",
        ]
    remove_stale_temporaries(run / "checkpoint.pt")
    assert temporaries(run) == [".checkpoint.pt.notmine.tmp"]


def test_concurrent_writers_of_one_target_keep_each_others_files(tmp_path):
    target = tmp_path / "out.npy"
    with replacing(target) as first:
        first.write_bytes(b"first")
        # A second writer starts, and cleans, while the first one writes.
        with replacing(target) as second:
            second.write_bytes(b"second")
        assert first.read_bytes() == b"first"
    assert target.read_bytes() == b"first"
    assert temporaries(tmp_path) == []


# -- a small full file system ---------------------------------------------------


@pytest.fixture
def full_disk(tmp_path):
    """A 1-MiB tmpfs mounted for the test, filled up but for 16 KiB; skipped
    where it cannot be mounted (not Linux, not root, no privilege)."""
    mount_point = tmp_path / "full"
    mount_point.mkdir()
    if sys.platform != "linux" or shutil.which("mount") is None:
        pytest.skip("a small file system is mounted with Linux's mount(8)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        free = shutil.disk_usage(mount_point).free
        (mount_point / "filler").write_bytes(bytes(free - 16 * 1024))
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Inputs of every command whose outputs do not fit in 16 KiB."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(2000, 8)).astype(np.float32)
    np.save(root / "X.npy", X)
    np.save(root / "y.npy", (X[:, 0] > 0.5).astype(np.int64))
    np.save(root / "E.npy", rng.normal(size=(20000, 2)).astype(np.float32))
    np.save(root / "s.npy", rng.normal(size=50))
    np.save(root / "i.npy", np.arange(50))
    np.save(root / "scores.npy", rng.normal(size=20000))
    images = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    np.savez(root / "pool.npz", image=images, label=np.arange(64) % 10)
    return root


FULL_DISK_COMMANDS = {
    "score": ["score", "X.npy", "y.npy", "--out-dir", "{out}/run", "--epochs", "2",
              "--importance", "frequency", "--extrapolation", "knn",
              "--attack-steps", "1", "--device", "cpu",
              "--subset-size", "40", "--quiet"],
    "extrapolate": ["extrapolate", "E.npy", "s.npy", "i.npy", "-o", "{out}/all.npy",
                    "--quiet"],
    "prune": ["prune", "scores.npy", "-o", "{out}/kept.npy", "--quiet"],
    "convert": ["convert", "pool.npz", "{out}/pool", "--quiet"],
}  # fmt: skip


# Commands that write through a memory map run in a process of their own: a
# regression there would be a SIGBUS, which must not end the test session.
THROUGH_A_MEMORY_MAP = ("score", "extrapolate")


@pytest.mark.parametrize("command", FULL_DISK_COMMANDS)
def test_a_full_file_system_is_one_line_and_no_temporary(
    full_disk, inputs, command, capsys, monkeypatch
):
    argv = [a.replace("{out}", str(full_disk)) for a in FULL_DISK_COMMANDS[command]]
    if command in THROUGH_A_MEMORY_MAP:
        result = run_cli(*argv, cwd=inputs)
        status, stderr = result.returncode, result.stderr
    else:
        monkeypatch.chdir(inputs)
        status = main(argv)
        stderr = capsys.readouterr().err
    assert_one_line(stderr, status, 2, "advprune: error: ")
    assert "space" in stderr
    assert [p.name for p in full_disk.rglob("*") if p.is_file()] == ["filler"]


def test_a_checkpoint_on_a_full_file_system_is_an_os_error(full_disk):
    with pytest.raises(OSError, match="cannot write the checkpoint") as info:
        _toy_run(full_disk / "run")
    assert info.value.errno == errno.ENOSPC
    assert temporaries(full_disk) == []


# -- killed and interrupted processes -------------------------------------------

CONVERT_FOREVER = """
import sys
from advprune.datasets import convert_npz_pool
print("ready", flush=True)
while True:
    for pool in sys.argv[1:3]:
        convert_npz_pool(pool, sys.argv[3], chunk_size=512)
"""


def _two_pools(root, n):
    """Two pools of the same size and different contents (labels all 3, all
    7), so that a mixed pair would load without a length error."""
    rng = np.random.default_rng(1)
    images = {}
    for name, label in (("a", 3), ("b", 7)):
        images[label] = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        np.savez(root / f"{name}.npz", image=images[label], label=np.full(n, label))
    return images


def _pool_state(out, images):
    """Whether ``out`` holds one of the pools whole, holds none, or is refused
    as a mixed pair; any other state fails the test."""
    try:
        X, y = load_pool(out)
    except ValueError as exc:
        assert "convert the pool again" in str(exc)
        return "refused"
    except FileNotFoundError:
        return "absent"
    label = int(y[0])
    assert (np.asarray(y) == label).all()
    np.testing.assert_array_equal(X.images, images[label])
    return "whole"


@POSIX_ONLY
def test_sigkill_at_random_points_of_convert_never_leaves_a_mixed_pool(tmp_path):
    images = _two_pools(tmp_path, 3000)
    out = tmp_path / "out"
    script = tmp_path / "convert.py"
    script.write_text(CONVERT_FOREVER)
    for delay in np.random.default_rng(3).uniform(0, 1.0, size=3):
        process = subprocess.Popen(
            [sys.executable, str(script), "a.npz", "b.npz", str(out)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
        )
        assert process.stdout.readline() == b"ready\n"
        time.sleep(delay)
        process.kill()
        process.wait()
        _pool_state(out, images)
    # The next conversion removes what the killed ones left.
    convert_npz_pool(tmp_path / "b.npz", out)
    assert _pool_state(out, images) == "whole"
    assert temporaries(out) == []


def test_convert_stopped_between_its_renames_is_refused(tmp_path, monkeypatch):
    images = _two_pools(tmp_path, 8)
    out = tmp_path / "out"
    convert_npz_pool(tmp_path / "a.npz", out)
    replace = os.replace

    def stop_before_labels(source, target):
        if Path(target).name == "labels.npy":
            raise KeyboardInterrupt
        replace(source, target)

    monkeypatch.setattr(advprune._io.os, "replace", stop_before_labels)
    with pytest.raises(KeyboardInterrupt):
        convert_npz_pool(tmp_path / "b.npz", out)
    monkeypatch.undo()
    # New images beside old labels: refused by load_pool and by the command.
    with pytest.raises(ValueError, match="labels.npy") as info:
        load_pool(out)
    assert "advprune-manifest.json" in str(info.value)
    pair = [str(out / "images.npy"), str(out / "labels.npy")]
    assert main(["score", *pair, "--out-dir", str(tmp_path / "run")]) == 2
    convert_npz_pool(tmp_path / "b.npz", out)
    assert _pool_state(out, images) == "whole"


@POSIX_ONLY
@pytest.mark.parametrize(
    ("sent", "status", "line"),
    [(signal.SIGINT, 130, "advprune: interrupted"),
     (signal.SIGTERM, 143, "advprune: terminated")],
    ids=["SIGINT", "SIGTERM"],
)  # fmt: skip
def test_an_interrupted_command_is_one_line_and_leaves_no_temporary(
    tmp_path, monkeypatch, capsys, sent, status, line
):
    images = np.zeros((64, 32, 32, 3), np.uint8)
    np.savez(tmp_path / "pool.npz", image=images, label=np.arange(64) % 10)
    write_npy = datasets_pools.write_npy

    def signalled_while_writing(file, *args):
        Path(file).write_bytes(b"half written")
        os.kill(os.getpid(), sent)
        time.sleep(5)  # the signal's handler raises before this ends
        write_npy(file, *args)

    monkeypatch.setattr(datasets_pools, "write_npy", signalled_while_writing)
    monkeypatch.chdir(tmp_path)
    # Python turns SIGINT into KeyboardInterrupt only where the process did not
    # start with SIGINT ignored, as a background job of a script does; make
    # this test's process the interactive kind whatever launched it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        status_returned = main(["convert", "pool.npz", "out", "--quiet"])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert_one_line(capsys.readouterr().err, status_returned, status, line)
    assert temporaries(tmp_path) == []
    assert not (tmp_path / "out" / "images.npy").exists()
    # The handler SIGTERM had before is back.
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


# -- the command line's failure table -------------------------------------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_files")
    write_bad_inputs(root)
    return root


SCORE = ["score", "X.npy", "y.npy", "--epochs", "2", "--importance", "frequency"]
CLI_FAILURES = {
    "bad argument": (["prune", "scores.npy", "-o", "k.npy", "--prune-ratio", "1.5"],
                     "--prune-ratio"),
    "unknown command": (["shrink"], "invalid choice"),
    "missing input": (["prune", "nope.npy", "-o", "k.npy"], "does not exist"),
    "truncated .npz": (["score", "truncated.npz", "--out-dir", "o"], "truncated.npz"),
    "truncated .npy": (["prune", "truncated.npy", "-o", "k.npy"], "truncated.npy"),
    "pickle in an .npz member": (["score", "pickled.npz", "--out-dir", "o"],
                                 "pickled.npz"),
    "object array in an .npz": (["score", "objects.npz", "--out-dir", "o"],
                                "objects.npz"),
    "pickle as .npy": (["prune", "pickled.npy", "-o", "k.npy"], "unpickling"),
    "output directory missing": (["prune", "scores.npy", "-o", "no/dir/k.npy"],
                                 "does not exist"),
    "output under a file": (["prune", "scores.npy", "-o", "a_file/k.npy"], "a_file"),
    "--out-dir under a file": ([*SCORE, "--out-dir", "a_file/run"], "--out-dir"),
    "--checkpoint-dir under a file": (
        [*SCORE, "--out-dir", "o", "--checkpoint-dir", "a_file/ck"],
        "--checkpoint-dir"),
}  # fmt: skip


@pytest.mark.parametrize("case", CLI_FAILURES)
def test_cli_failure_table_through_the_script(bad_files, case):
    argv, fragment = CLI_FAILURES[case]
    before = sorted(p.name for p in bad_files.iterdir())
    result = run_cli(*argv, cwd=bad_files)
    assert_one_line(result.stderr, result.returncode, 2, "advprune: error:", fragment)
    assert sorted(p.name for p in bad_files.iterdir()) == before


class _TrainingStarted(Exception):
    """Raised by the first training step, where a test refuses training."""


def _refuse_training(self, x, y):
    raise _TrainingStarted


# Failures found by the estimator: in process, so that training can be refused
# and each failure shown to come before it.
SCORE_FAILURES = {
    "NaN in an unscored row": (["X_nan.npy", "y.npy"], "NaN"),
    "empty X": (["X_empty.npy", "y_empty.npy"], "at least one sample"),
    "one class": (["X.npy", "y_one.npy"], "two classes"),
    "--device cuda without CUDA": (["X.npy", "y.npy", "--device", "cuda"], "CUDA"),
    "damaged checkpoint": (["X.npy", "y.npy", "--checkpoint-dir", "damaged"],
                           "damaged"),
    "too few epochs for the score": (
        ["X.npy", "y.npy", "--importance", "dynamic_uncertainty"], "window"),
}  # fmt: skip


@pytest.mark.parametrize("case", SCORE_FAILURES)
def test_score_checks_everything_before_training(bad_files, case, capsys, monkeypatch):
    if case.startswith("--device") and torch.cuda.is_available():
        pytest.skip("CUDA is available")
    arguments, fragment = SCORE_FAILURES[case]
    monkeypatch.chdir(bad_files)
    monkeypatch.setattr(AdversarialTrainer, "train_step", _refuse_training)
    # The case's own --importance or --device come last, and win.
    argv = ["score", *arguments[:2], "--out-dir", "o", "--epochs", "2",
            "--importance", "frequency", "--extrapolation", "knn",
            "--device", "cpu", "--quiet",
            *arguments[2:]]  # fmt: skip
    status = main(argv)
    assert_one_line(capsys.readouterr().err, status, 2, fragment)
    assert not (bad_files / "o").exists()


# -- random parameters: every error before training -----------------------------


def _forward_only(self, x, y):
    """A training step that records that training started, and trains
    nothing: the recorders, scores, embedding, extrapolation and selection
    then all run for real, in a fraction of the time."""
    _STARTED.append(True)
    with torch.no_grad():
        logits = self.model(x)
    return logits, logits.new_zeros(())


_STARTED = []


def _data():
    rng = np.random.default_rng(0)
    flat = rng.uniform(size=(60, 4)).astype(np.float32)
    images = rng.uniform(size=(48, 1, 6, 6)).astype(np.float32)
    return {
        "flat, 2 classes": (flat, (flat[:, 0] > 0.5).astype(np.int64)),
        "flat, string labels": (flat, np.array(["a", "b", "c"])[np.arange(60) % 3]),
        "images": (images, np.arange(48) % 2),
    }


DATA = _data()


def _bad_shape(x, generator):
    return x[:1]


def _one_score_per_sample(P):
    return P.mean(axis=0)


def _wrong_score_shape(P):
    return P.mean()


def _embed_2d(X):
    return np.asarray(X).reshape(len(X), -1)[:, :2]


def _embed_wrong_rows(X):
    return np.zeros((1, 2))


# Per parameter: valid values first (hypothesis shrinks towards them), then
# invalid ones.
TRAINING = {
    "method": ["pgd", "trades", "standard", "fgsm"],
    "eps": [0.05, 0.0, 1.0, -0.1, float("nan"), float("inf"), "big"],
    "norm": ["linf", "l2", "l1"],
    "attack_steps": [1, 3, 0, 2.5],
    "step_size": [None, 0.01, 0.0, -1.0],
    "beta": [6.0, 0.0, -1.0],
    "epochs": [3, 1, 12, 0, -2, 2.0],
    "batch_size": [16, 1, 10**6, 0, 16.0],
    "optimizer": ["sgd", "adam", "lbfgs"],
    "lr": [0.05, 1.0, 0.0, -0.1, float("nan")],
    "momentum": [0.9, 0.0, -0.5],
    "nesterov": [True, False, "yes"],
    "weight_decay": [5e-4, 0.0, -1.0],
    "schedule": ["cosine", "multistep", "constant", "linear"],
    "bounds": [(0.0, 1.0), None, (-1, 2), (0.2, 0.8), (1.0, 0.0), (0.0,), "box",
               (0.0, float("nan"))],
    "augment": [None, lambda x, generator: x, RandomCropFlip(padding=1), _bad_shape,
                "flip"],
    "device": ["cpu", "auto", "cuda", "tpu", 3],
    "amp": [False, True, "yes"],
    "random_state": [0, None, 7, -1, "seed"],
}  # fmt: skip
MODELS = {"model": [None, "mlp", "nope", torch.nn.Linear(3, 2)]}
# The pruner's own stages, after training: where late errors would hide.
STAGES = {
    "prune_ratio": [0.5, 0.0, 0.9, 1.0, -0.1, float("nan"), "half"],
    "importance": ["frequency", *sorted(set(SCORES) - {"frequency"}),
                   _one_score_per_sample, _wrong_score_shape, "nope", 3],
    "subset_size": [0.5, 1.0, 12, 3, 0, 1.5, 10**4, None],
    "class_balanced": [False, True, "yes"],
    "selection": ["lowest", "stratified", "highest"],
    "signal": ["adversarial", "clean", "both"],
    "record": ["epoch", "online", None],
    "importance_params": [None, {}, {"window": 2}, {"window": 0}, {"nope": 1}, "w"],
    **MODELS,
    "embedding": ["model", "raw", PCA(2), PCA(50), _embed_2d, _embed_wrong_rows,
                  "nope"],
    "extrapolator": [None, ImportanceExtrapolator(n_neighbors=3),
                     ImportanceExtrapolator(n_neighbors=500), LinearRegression(),
                     KNeighborsRegressor(n_neighbors=500), "knn"],
    "chunk_size": [65536, 7, 0, -1, 2.5],
    "checkpoint_dir": [None, "/dev/null/checkpoints", 3],
    "n_jobs": [None, 1, 0, "all"],
}  # fmt: skip
SWEEP = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


# A valid, quick run that each example changes in a few parameters, so that
# most examples reach training and an error after it would show.
BASE = {"epochs": 3, "attack_steps": 1, "batch_size": 16, "device": "cpu",
        "random_state": 0}  # fmt: skip
PRUNER_BASE = {
    **BASE,
    "importance": "frequency",
    "extrapolation": "knn",
    "subset_size": 0.5,
}


def _changes(table, *, at_most):
    names = st.lists(st.sampled_from(sorted(table)), max_size=at_most, unique=True)
    return names.flatmap(
        lambda chosen: st.fixed_dictionaries(
            {name: st.sampled_from(table[name]) for name in chosen}
        )
    )


def _fit_refusing_late_errors(estimator, data):
    """Fit; an error may come, as a ValueError or TypeError, but only before
    the first training step."""
    X, y = DATA[data]
    _STARTED.clear()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimator.fit(X, y)
    except (ValueError, TypeError) as exc:
        assert not _STARTED, f"raised after training started: {exc!r}"
        event("refused before training")
    else:
        event("trained")


@SWEEP
@given(
    training=_changes(TRAINING, at_most=2),
    stages=_changes(STAGES, at_most=3),
    data=st.sampled_from(sorted(DATA)),
)
def test_pruner_errors_come_before_training(monkeypatch, training, stages, data):
    monkeypatch.setattr(AdversarialTrainer, "train_step", _forward_only)
    pruner = AdversarialPruner(**{**PRUNER_BASE, **training, **stages})
    _fit_refusing_late_errors(pruner, data)


@SWEEP
@given(
    training=_changes({**TRAINING, **MODELS}, at_most=3),
    data=st.sampled_from(sorted(DATA)),
)
def test_classifier_errors_come_before_training(monkeypatch, training, data):
    monkeypatch.setattr(AdversarialTrainer, "train_step", _forward_only)
    classifier = AdversarialClassifier(**{**BASE, **training})
    _fit_refusing_late_errors(classifier, data)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"embedding": PCA(50)}, "embedding=PCA(n_components=50)"),
        ({"embedding": _embed_wrong_rows}, "one row per sample"),
        ({"embedding": torch.nn.Linear(7, 2)}, "embedding=Linear"),
        ({"memory": "/dev/null/cache"}, "memory='/dev/null/cache'"),
        ({"checkpoint_dir": "/dev/null/run"}, "checkpoint_dir='/dev/null/run'"),
    ],
    ids=["transformer", "callable", "module", "memory", "checkpoint_dir"],
)
def test_pruner_refuses_before_training(monkeypatch, params, fragment):
    # The failures the sweep found after training, or that surfaced there as
    # an OSError, each a ValueError before it now.
    monkeypatch.setattr(AdversarialTrainer, "train_step", _refuse_training)
    X, y = DATA["flat, 2 classes"]
    with pytest.raises(ValueError, match=re.escape(fragment)):
        AdversarialPruner(**{**PRUNER_BASE, **params}).fit(X, y)
