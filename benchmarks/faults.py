"""Fault injection: how many of the faults a user can meet advprune handles well.

Tries, at test size, the faults of the reliability issue and counts, per
category, the cases tried and the cases that pass. A case passes when the
fault is handled as the documentation promises:

- a damaged checkpoint is refused with a ``ValueError`` that names the file, or
  the run resumes to exactly the scores of an uninterrupted run; never a
  different result, never a raw error of the unpickler or the zip reader;
- the same run resumes whatever the spelling (``verbose``, ``device``, an
  augmentation function rebuilt in a new process); another run is refused;
- a process killed with SIGKILL (scoring, ``convert``) leaves either the old
  or the new output whole, or one that the readers refuse, and the next run
  cleans its temporary files; a run killed while scoring resumes identically;
- the command line answers every failure (bad arguments or files, a full or
  read-only disk, a missing device, an interruption) with one line on stderr
  and its documented exit status, never a traceback or a crash by signal, and
  leaves no temporary file;
- a check that can run before training does (bad data, unwritable outputs,
  parameters, by a random sweep over the estimator's parameter constraints);
- a CIFAR-10 python batch of any pickle protocol loads, and a malicious pickle
  is refused without running anything.

The small full and read-only file systems are 1-MiB tmpfs mounts, which need
Linux and the privilege to mount; without it those categories are skipped,
and the reason printed. Prints the table and writes it, with every case's
outcome, to ``benchmarks/results/faults.json`` (``--out`` to change).

Run from the repository root (a few minutes; most of it is starting Python
processes that import torch)::

    python -m benchmarks.faults

For another version of advprune (the commit before the reliability work, say),
copy ``benchmarks/__init__.py`` and ``benchmarks/faults.py`` into its checkout
and run the same command there, with ``--out`` outside it; the processes it
starts import advprune from the current directory too.
"""

import argparse
import contextlib
import fcntl
import functools
import json
import os
import pickle
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from numbers import Integral
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsRegressor
from sklearn.utils._param_validation import Interval, StrOptions

import advprune
from advprune import AdversarialPruner
from advprune._io import replacing
from advprune.datasets import convert_npz_pool, load_cifar10_python, load_pool
from advprune.training import AdversarialTrainer
from advprune.training._checkpoint import _Checkpoint

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS = REPOSITORY / "benchmarks" / "results"
PRUNER = {
    "prune_ratio": 0.5,
    "subset_size": 0.5,
    "epochs": 6,
    "eps": 0.05,
    "attack_steps": 2,
    "batch_size": 25,
    "importance": "frequency",
    "extrapolation": "knn",
    "embedding": "raw",
    "device": "cpu",
    "random_state": 0,
}
STOP_AFTER_EPOCH = 2
CLI_TIMEOUT = 300


def _data():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(300, 8)).astype(np.float32)
    return X, (X[:, 0] + X[:, 1] > 1).astype(np.int64)


X, Y = _data()


class _Stop(Exception):
    """Ends a run after a checkpoint is saved, as a crash would."""


def _scores(checkpoint_dir=None, **changes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = AdversarialPruner(
            **{**PRUNER, **changes}, checkpoint_dir=checkpoint_dir
        )
        return pruner.fit(X, Y).scores_


def _interrupted(directory, **changes):
    """Leave in ``directory`` the checkpoint of a run stopped mid-way."""
    save = _Checkpoint.save

    def save_then_stop(self, trainer, *args):
        save(self, trainer, *args)
        if trainer.epoch_ == STOP_AFTER_EPOCH:
            raise _Stop

    _Checkpoint.save = save_then_stop
    try:
        _scores(directory, **changes)
    except _Stop:
        pass
    finally:
        _Checkpoint.save = save


def _resumed_or_refused(directory, reference, **changes):
    """Pass: the resumed run's scores are the reference's, or the checkpoint is
    refused with a ValueError naming it."""
    path = str(Path(directory) / "checkpoint.pt")
    try:
        scores = _scores(directory, **changes)
    except ValueError as exc:
        return path in str(exc), f"refused: {_line(exc)}"
    except Exception as exc:  # what the case is about: torch's raw errors
        return False, f"{type(exc).__name__}: {_line(exc)}"
    if np.array_equal(scores, reference):
        return True, "resumed, identical scores"
    changed = int((np.argsort(scores) != np.argsort(reference)).sum())
    return False, f"resumed SILENTLY DIFFERENT ({changed} ranks changed)"


def _line(exc):
    return " ".join(str(exc).split())[:200]


# -- checkpoints -------------------------------------------------------------------


def checkpoint_cases(root, n_flips):
    reference = _scores()
    _interrupted(root / "mid_run")
    data = (root / "mid_run" / "checkpoint.pt").read_bytes()
    rng = np.random.default_rng(40)
    flips = []
    for i, bit in enumerate(rng.integers(0, 8 * len(data), size=n_flips)):
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << (bit % 8)
        flips.append((f"bit {bit}", _with_checkpoint(root / f"flip{i}", damaged)))
    yield (
        "checkpoint: random single-bit flips",
        [
            (name, *_resumed_or_refused(directory, reference))
            for name, directory in flips
        ],
    )
    damages = {
        "empty": b"",
        "truncated to 10%": data[: len(data) // 10],
        "truncated to 50%": data[: len(data) // 2],
        "last byte cut": data[:-1],
        "not a checkpoint": b"not a checkpoint\n" * 20,
    }
    yield (
        "checkpoint: truncated or foreign files",
        [
            (name, *_refused_naming(_with_checkpoint(root / f"d{i}", damaged)))
            for i, (name, damaged) in enumerate(damages.items())
        ],
    )


def _with_checkpoint(directory, data):
    directory.mkdir()
    (directory / "checkpoint.pt").write_bytes(data)
    return directory


def _refused_naming(directory):
    path = str(directory / "checkpoint.pt")
    try:
        _scores(directory)
    except ValueError as exc:
        return path in str(exc), _line(exc)
    except Exception as exc:
        return False, f"{type(exc).__name__}: {_line(exc)}"
    return False, "resumed from a damaged file"


def _add(x, generator, shift):
    return x + shift


def _rebuilt_function():
    """A new function object at each call, as a new process builds one: its
    repr holds another memory address, its qualified name is the same."""

    def shift_rows(x, generator):
        return x + 0.0

    return shift_rows


def identity_cases(root):
    # (changes of the interrupted run, changes of the resumed one)
    same = {
        "verbose=True": ({}, {"verbose": True}),
        "device='auto' for 'cpu'": ({}, {"device": "auto"}),
        "augment: a function, rebuilt": (
            {"augment": _rebuilt_function()},
            {"augment": _rebuilt_function()},
        ),
        "augment: a functools.partial, rebuilt": (
            {"augment": functools.partial(_add, shift=0.0)},
            {"augment": functools.partial(_add, shift=0.0)},
        ),
    }
    if torch.cuda.is_available():
        del same["device='auto' for 'cpu'"]
    cases = []
    for i, (name, (first, then)) in enumerate(same.items()):
        directory = root / f"same{i}"
        reference = _scores(**first)
        _interrupted(directory, **first)
        with _quiet():
            cases.append((name, *_resumed_or_refused(directory, reference, **then)))
    yield "run identity: the same run resumes", cases
    other = {
        "another seed": {"random_state": 1},
        "another eps": {"eps": 0.1},
        "another augment function": {"augment": functools.partial(_add, shift=0.1)},
    }
    cases = []
    for i, (name, changes) in enumerate(other.items()):
        directory = root / f"other{i}"
        _interrupted(directory)
        try:
            _scores(directory, **changes)
        except ValueError as exc:
            cases.append((name, "different run" in str(exc), _line(exc)))
        else:
            cases.append((name, False, "resumed another run's checkpoint"))
    yield "run identity: another run is refused", cases


@contextlib.contextmanager
def _quiet():
    with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
        yield


def temporary_cases(root):
    directory = root / "stale"
    _interrupted(directory)
    stale = directory / ".checkpoint.pt.0123abcd.tmp"
    stale.write_bytes(b"what a killed save leaves")
    live = directory / ".checkpoint.pt.89abcdef.tmp"
    live.write_bytes(b"")
    with open(live, "rb") as held:
        # A save in progress in another process holds its file locked.
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        _scores(directory)
    yield (
        "temporary files of killed saves",
        [
            ("stale one removed at the next start", not stale.exists(), ""),
            ("a live writer's one kept", live.exists(), ""),
        ],
    )


# -- killed processes --------------------------------------------------------------

SCORING_SCRIPT = """
import sys
import numpy as np
import torch
from benchmarks.faults import PRUNER, X, Y
from advprune import AdversarialPruner

torch.set_num_threads(1)
print("ready", flush=True)
scores = AdversarialPruner(**{**PRUNER, "epochs": 30},
                           checkpoint_dir=sys.argv[1]).fit(X, Y).scores_
np.save(sys.argv[2], scores)
"""


def sigkill_scoring_cases(root, n_kills):
    reference = _scores(epochs=30)
    rng = np.random.default_rng(9)
    cases = []
    for i, delay in enumerate(rng.uniform(0.5, 4.0, size=n_kills)):
        directory, out = root / f"killed{i}", root / f"killed{i}.npy"
        process = _python(SCORING_SCRIPT, directory, out)
        assert process.stdout.readline() == "ready\n"
        time.sleep(delay)
        process.kill()
        process.wait()
        finished = _python(SCORING_SCRIPT, directory, out)
        finished.communicate(timeout=CLI_TIMEOUT)
        left = _temporaries(directory)
        same = out.exists() and np.array_equal(np.load(out), reference)
        cases.append(
            (f"killed {delay:.2f} s after start", same and not left, f"left {left}")
        )
    yield "SIGKILL while scoring, then resume", cases


def _python(script, *args):
    # From the repository, whose advprune and benchmarks the script imports.
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _temporaries(directory):
    return sorted(p.name for p in Path(directory).rglob("*.tmp"))


CONVERT_SCRIPT = """
import os
import sys
from advprune.datasets import convert_npz_pool

a, b, out, mode = sys.argv[1:]
if mode == "between-renames":
    replace = os.replace

    def die_before_labels(source, target):
        if str(target).endswith("labels.npy"):
            os.kill(os.getpid(), 9)
        replace(source, target)

    os.replace = die_before_labels
print("ready", flush=True)
while True:
    for pool in (a, b):
        convert_npz_pool(pool, out, chunk_size=256)
"""


def sigkill_convert_cases(root, n_kills):
    n = 3000
    rng = np.random.default_rng(1)
    pools = {}
    for name, label in (("a", 3), ("b", 7)):
        pools[label] = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        np.savez(root / f"{name}.npz", image=pools[label], label=np.full(n, label))
    cases = []
    for i, delay in enumerate(np.random.default_rng(5).uniform(0, 1.5, n_kills)):
        out = root / f"pool{i}"
        convert_npz_pool(root / "b.npz", out)
        process = _python(CONVERT_SCRIPT, root / "a.npz", root / "b.npz", out, "loop")
        assert process.stdout.readline() == "ready\n"
        time.sleep(delay)
        process.kill()
        process.wait()
        cases.append((f"killed after {delay:.2f} s", *_pool_consistent(out, pools)))
    out = root / "pool_between"
    convert_npz_pool(root / "b.npz", out)
    process = _python(
        CONVERT_SCRIPT, root / "a.npz", root / "b.npz", out, "between-renames"
    )
    process.communicate(timeout=CLI_TIMEOUT)
    cases.append(("killed between the two renames", *_pool_consistent(out, pools)))
    yield "SIGKILL during convert", cases


def _pool_consistent(out, pools):
    """Pass: a whole pool, or a clear refusal; and a next conversion into the
    same directory leaves no temporary file."""
    try:
        images, labels = load_pool(out)
        label = int(labels[0])
        whole = (np.asarray(labels) == label).all() and np.array_equal(
            images.images, pools[label]
        )
        outcome = "one whole pool" if whole else "A MIXED PAIR, ACCEPTED"
    except ValueError as exc:
        whole, outcome = True, f"refused: {_line(exc)}"
    convert_npz_pool(out.parent / "a.npz", out)
    left = _temporaries(out)
    return bool(whole) and not left, f"{outcome}; left after the next run: {left}"


# -- the command line ----------------------------------------------------------------


def _cli(*args, cwd, out=None, interrupt=None):
    """Run ``advprune``, with ``{out}`` in its arguments replaced by ``out``;
    with ``interrupt=(signal, directory)``, send the signal once a temporary
    file appears in the directory (the command is writing)."""
    args = [str(arg).replace("{out}", str(out)) for arg in args]
    process = subprocess.Popen(
        [sys.executable, "-m", "advprune.cli", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if interrupt is not None:
        sent, directory = interrupt
        while process.poll() is None and not _temporaries(directory):
            time.sleep(0.005)
        process.send_signal(sent)
    stderr = process.communicate(timeout=CLI_TIMEOUT)[1]
    return process.returncode, stderr


def _one_line(status, stderr, expected, fragment):
    """Pass: the expected status, one line on stderr that holds ``fragment``."""
    lines = stderr.strip().splitlines()
    ok = (
        status == expected
        and len(lines) == 1
        and lines[0].startswith("advprune: ")
        and fragment in lines[0]
    )
    shown = lines[-1] if lines else ""
    return ok, f"exit {status}, {len(lines)} line(s): {shown[:160]}"


def write_bad_inputs(root):
    """The inputs of the command line's failure cases, in ``root``: good
    ``X.npy`` and ``y.npy``, and each way an input can be bad. Shared with
    ``tests/test_faults.py``."""
    np.save(root / "X.npy", X)
    np.save(root / "y.npy", Y)
    X_nan = X.copy()
    X_nan[-1, 3] = np.nan
    np.save(root / "X_nan.npy", X_nan)
    np.save(root / "X_empty.npy", X[:0])
    np.save(root / "y_empty.npy", Y[:0])
    np.save(root / "y_one.npy", np.zeros_like(Y))
    np.savez(root / "pool.npz", X=X, y=Y)
    data = (root / "pool.npz").read_bytes()
    (root / "truncated.npz").write_bytes(data[: len(data) // 2])
    with zipfile.ZipFile(root / "pickled.npz", "w") as archive:
        archive.writestr("X.npy", pickle.dumps(X))
        archive.writestr("y.npy", pickle.dumps(Y))
    np.savez(root / "objects.npz", X=np.array([{"a": 1}] * len(X)), y=Y)
    with open(root / "pickled.npy", "wb") as f:
        pickle.dump(X, f)
    (root / "truncated.npy").write_bytes((root / "X.npy").read_bytes()[:100])
    np.save(root / "scores.npy", np.linspace(0, 1, len(X)))
    (root / "a_file").write_text("")
    (root / "damaged").mkdir()
    (root / "damaged" / "checkpoint.pt").write_bytes(b"PK\x03\x04 cut short")


SCORE = ["score", "X.npy", "y.npy", "--out-dir", "out", "--importance", "frequency",
         "--extrapolation", "knn", "--epochs", "3", "--attack-steps", "1",
         "--quiet"]  # fmt: skip
CLI_CASES = {
    "--prune-ratio 1.5": (["prune", "scores.npy", "-o", "k.npy", "--prune-ratio",
                           "1.5"], 2, "--prune-ratio"),
    "missing input file": (["prune", "nope.npy", "-o", "k.npy"], 2, "nope.npy"),
    "truncated .npy": (["prune", "truncated.npy", "-o", "k.npy"], 2,
                       "truncated.npy"),
    "truncated .npz": (["score", "truncated.npz", "--out-dir", "out"], 2,
                       "truncated.npz"),
    ".npz member holding a pickle": (["score", "pickled.npz", "--out-dir", "out"],
                                     2, "pickled.npz"),
    ".npz of Python objects": (["score", "objects.npz", "--out-dir", "out"], 2,
                               "objects.npz"),
    ".npy holding a pickle": (["prune", "pickled.npy", "-o", "k.npy"], 2,
                              "pickled.npy"),
    "output directory missing": (["prune", "scores.npy", "-o", "no/dir/k.npy"], 2,
                                 "no/dir"),
    "--out-dir that cannot be created": ([*SCORE[:4], "a_file/run", *SCORE[5:]],
                                         2, "a_file"),
    "--device cuda without CUDA": ([*SCORE, "--device", "cuda"], 2, "CUDA"),
    "empty X": (["score", "X_empty.npy", "y_empty.npy", "--out-dir", "out"], 2,
                "X must"),
    "NaN in an unscored row": (["score", "X_nan.npy", "y.npy", *SCORE[3:]], 2,
                               "NaN"),
    "damaged checkpoint (--checkpoint-dir)": ([*SCORE, "--checkpoint-dir",
                                               "damaged"], 2, "checkpoint.pt"),
}  # fmt: skip


def cli_cases(root):
    write_bad_inputs(root)
    images = np.random.default_rng(0).integers(0, 256, (8000, 32, 32, 3), np.uint8)
    np.savez(root / "big.npz", image=images, label=np.arange(8000) % 10)
    cases = []
    for name, (argv, expected, fragment) in CLI_CASES.items():
        if name.startswith("--device cuda") and torch.cuda.is_available():
            continue
        shutil.rmtree(root / "out", ignore_errors=True)
        status, stderr = _cli(*argv, cwd=root)
        cases.append((name, *_one_line(status, stderr, expected, fragment)))
    # Interrupted while writing: one line, its status, no temporary file.
    for sent, expected, fragment in (
        (signal.SIGINT, 130, "interrupted"),
        (signal.SIGTERM, 143, "terminated"),
    ):
        out = root / f"interrupted_{sent.name}"
        # --quiet: the progress bar's lines are not the failure's report.
        status, stderr = _cli("convert", "big.npz", out, "--quiet", cwd=root,
                              interrupt=(sent, root))  # fmt: skip
        ok, detail = _one_line(status, stderr, expected, fragment)
        left = _temporaries(root)
        cases.append(
            (f"{sent.name} during convert", ok and not left, f"{detail}; left {left}")
        )
    yield "command line: failures a user can cause or meet", cases


# -- small full and read-only file systems -------------------------------------------


@contextlib.contextmanager
def _tmpfs(directory, options):
    """A 1-MiB tmpfs at ``directory``; yields the reason it cannot be mounted,
    or None."""
    directory.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size=1m,{options}", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        yield mounted.stderr.strip() or "mount failed"
        return
    try:
        yield None
    finally:
        subprocess.run(["umount", str(directory)], check=True)


FULL_DISK = {
    "score": [*SCORE[:4], "{out}/run", *SCORE[5:], "--subset-size", "40"],
    "extrapolate": ["extrapolate", "run/embeddings.npy", "run/scores.npy",
                    "run/scored_indices.npy", "-o", "{out}/all.npy"],
    "prune": ["prune", "run/all_scores.npy", "-o", "{out}/kept.npy"],
    "convert": ["convert", "pool.npz", "{out}/pool"],
}  # fmt: skip
# What a full disk leaves free: less than any output of FULL_DISK (kept.npy,
# the smallest, is 8 bytes a kept row of 4,000).
FREE_BYTES = 8 * 1024


def disk_cases(root):
    # The commands' inputs are those of the method: the outputs of a scoring
    # run on a disk with room, then a pool archive.
    rng = np.random.default_rng(0)
    pool = rng.uniform(size=(4000, 8)).astype(np.float32)
    np.save(root / "X.npy", pool)
    np.save(root / "y.npy", (pool[:, 0] > 0.5).astype(np.int64))
    status, stderr = _cli(*FULL_DISK["score"], cwd=root, out=".")
    assert status == 0, stderr
    images = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    np.savez(root / "pool.npz", image=images, label=np.arange(64) % 10)
    for name, options, cases in (
        ("full file system", "rw", _full_disk_cases),
        ("read-only file system", "ro", _read_only_cases),
    ):
        with _tmpfs(root / options, options) as reason:
            if reason is None:
                yield name, list(cases(root, root / options))
            else:
                yield name, f"skipped: cannot mount a tmpfs ({reason})"


def _full_disk_cases(root, full):
    filler = full / "filler"
    for command, argv in FULL_DISK.items():
        filler.write_bytes(bytes(shutil.disk_usage(full).free - FREE_BYTES))
        status, stderr = _cli(*argv, "--quiet", cwd=root, out=full)
        ok, detail = _one_line(status, stderr, 2, "space")
        left = sorted(p.name for p in full.rglob("*") if p != filler and p.is_file())
        yield command, ok and not left, f"{detail}; files left {left}"
        # Empty for the next command, whatever this one left.
        for path in full.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    filler.write_bytes(bytes(shutil.disk_usage(full).free - FREE_BYTES))
    try:
        _scores(full / "checkpoints")
    except OSError as exc:
        yield "checkpoint (Python API)", exc.errno == 28, _line(exc)
    except Exception as exc:
        yield "checkpoint (Python API)", False, f"{type(exc).__name__}: {_line(exc)}"
    else:
        yield "checkpoint (Python API)", False, "no error"


def _read_only_cases(root, read_only):
    for command, argv in FULL_DISK.items():
        started = time.monotonic()
        status, stderr = _cli(*argv, "--quiet", cwd=root, out=read_only)
        ok, detail = _one_line(status, stderr, 2, str(read_only))
        yield command, ok, f"{detail} ({time.monotonic() - started:.0f} s)"


# -- checks before training ----------------------------------------------------------


class _TrainingStarted(Exception):
    pass


@contextlib.contextmanager
def _training_refused():
    step = AdversarialTrainer.train_step

    def refuse(self, x, y):
        raise _TrainingStarted

    AdversarialTrainer.train_step = refuse
    try:
        yield
    finally:
        AdversarialTrainer.train_step = step


def _embed_one_row(X_batch):
    return np.zeros((1, 2))


def early_cases(root):
    X_nan = X.copy()
    X_nan[-1, 3] = np.nan
    cases = {
        "NaN in an unscored row": ({}, X_nan),
        "memory= that cannot be written": ({"memory": "/dev/null/cache"}, X),
        "checkpoint_dir= that cannot be written": (
            {"checkpoint_dir": "/dev/null/run"},
            X,
        ),
        "embedding=PCA(50) on 8 features": ({"embedding": PCA(50)}, X),
        "embedding callable, one row": ({"embedding": _embed_one_row}, X),
        "importance window longer than the run": (
            {"importance": "dynamic_uncertainty"},
            X,
        ),
    }
    results = []
    for name, (changes, data) in cases.items():
        params = {**PRUNER, **changes}
        with _training_refused():
            try:
                AdversarialPruner(**params).fit(data, Y)
            except (ValueError, TypeError) as exc:
                results.append((name, True, _line(exc)))
            except _TrainingStarted:
                results.append((name, False, "no error before training"))
            except Exception as exc:
                results.append((name, False, f"{type(exc).__name__}: {_line(exc)}"))
    yield "checks before training (Python API)", results


def _interval_values(interval):
    """Values at the ends of an Interval constraint, inside it and just
    outside it (an unbounded end is taken 10 away from the other)."""
    low = -1 if interval.left is None else interval.left
    high = low + 10 if interval.right is None else interval.right
    if interval.type is Integral:
        return [low, high, low + 1, low - 1, low + 0.5]
    return [low, high, (low + high) / 2, low - 0.5, high + 0.5, float("inf")]


def _wrong_rows(P):
    return P.mean()


# Values of the parameters whose constraints name a type or callable, not a
# range: the ones that work and the ones that cannot.
_OBJECT_VALUES = {
    "importance": [lambda P: P.mean(axis=0), _wrong_rows],
    "importance_params": [None, {"window": 2}, {"window": 0}, {"nope": 1}],
    "model": [None, "mlp", "nope", torch.nn.Linear(3, 2)],
    "bounds": [(0.0, 1.0), None, (0.2, 0.8), (1.0, 0.0), (0.0,)],
    "augment": [None, lambda x, generator: x, lambda x, generator: x[:1]],
    "device": ["cpu", "cuda", "tpu"],
    "embedding": [PCA(2), PCA(50), _embed_one_row],
    "extrapolator": [None, KNeighborsRegressor(n_neighbors=500)],
    "memory": [None, "/dev/null/cache"],
    "checkpoint_dir": [None, "/dev/null/run"],
    "n_jobs": [None, 1, 0],
    "random_state": [0, 7, -1],
    "verbose": [False],
}


def parameter_values():
    """Every parameter of AdversarialPruner: values derived from its
    constraints (the ends and middle of each range, just outside it, each
    option) and a value of a wrong type."""
    values = {}
    for name, constraints in AdversarialPruner._parameter_constraints.items():
        choices = list(_OBJECT_VALUES.get(name, []))
        for constraint in constraints:
            if isinstance(constraint, Interval):
                choices += _interval_values(constraint)
            elif isinstance(constraint, StrOptions):
                choices += sorted(constraint.options)
            elif constraint == "boolean":
                choices += [True, False]
        values[name] = [*choices, "not-a-value"] if name != "verbose" else choices
    return values


def sweep_cases(root, n_draws):
    values = parameter_values()
    rng = random.Random(0)
    started = []
    step = AdversarialTrainer.train_step

    def forward_only(self, x, y):
        started.append(True)
        with torch.no_grad():
            logits = self.model(x)
        return logits, logits.new_zeros(())

    AdversarialTrainer.train_step = forward_only
    cases = []
    try:
        for _ in range(n_draws):
            changes = {
                name: rng.choice(values[name])
                for name in rng.sample(sorted(values), rng.randint(1, 3))
            }
            started.clear()
            try:
                with warnings.catch_warnings(), _quiet():
                    warnings.simplefilter("ignore")
                    AdversarialPruner(**{**PRUNER, **changes}).fit(X, Y)
                cases.append((repr(changes), True, "fitted"))
            except (ValueError, TypeError) as exc:
                late = "AFTER TRAINING STARTED: " if started else ""
                cases.append((repr(changes), not started, late + _line(exc)))
            except Exception as exc:
                cases.append((repr(changes), False, f"{type(exc).__name__}: {exc}"))
    finally:
        AdversarialTrainer.train_step = step
    yield "parameter sweep: errors only before training", cases


# -- CIFAR-10 python batches -------------------------------------------------------


class _Exploit:
    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def cifar_cases(root):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batch = {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": [int(v) for v in rng.integers(0, 10, 4)],
        b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
        b"filenames": [b"%d.png" % i for i in range(4)],
    }
    cases = []
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=protocol))
        try:
            images, _ = load_cifar10_python(folder, split="test")
            ok = np.array_equal(images.images.reshape(4, -1), batch[b"data"])
            cases.append((f"protocol {protocol}", ok, "loaded"))
        except ValueError as exc:
            cases.append((f"protocol {protocol}", False, _line(exc)))
    yield "CIFAR-10 python batch: every pickle protocol", cases
    marker = root / "pwned"
    exploits = {
        "os.system, protocol 2": (_Exploit(os.system, f"touch {marker}"), 2),
        "os.system, protocol 5": (_Exploit(os.system, f"touch {marker}"), 5),
        "builtins.exec": (_Exploit(exec, f"open({str(marker)!r}, 'w')"), 4),
        "numpy.save to a file": (_Exploit(np.save, str(marker), np.zeros(1)), 3),
    }
    cases = []
    for name, (exploit, protocol) in exploits.items():
        poisoned = {**batch, b"labels": exploit}
        (folder / "test_batch").write_bytes(pickle.dumps(poisoned, protocol=protocol))
        try:
            load_cifar10_python(folder, split="test")
            refused = False
        except ValueError:
            refused = True
        ran = marker.exists() or marker.with_suffix(".npy").exists()
        cases.append((name, refused and not ran, "refused" if refused else "LOADED"))
    yield "CIFAR-10 python batch: malicious pickles refused", cases


# -- the table -----------------------------------------------------------------------


def run(args):
    categories = {}
    with tempfile.TemporaryDirectory() as tmp, _working_directory(tmp):
        tmp = Path(tmp)
        steps = [
            functools.partial(checkpoint_cases, n_flips=args.flips),
            identity_cases,
            temporary_cases,
            functools.partial(sigkill_scoring_cases, n_kills=args.kills),
            functools.partial(sigkill_convert_cases, n_kills=args.kills),
            cli_cases,
            disk_cases,
            early_cases,
            functools.partial(sweep_cases, n_draws=args.draws),
            cifar_cases,
        ]
        for i, step in enumerate(steps):
            root = tmp / str(i)
            root.mkdir()
            for category, cases in step(root):
                categories[category] = cases
                print(_row(category, cases), flush=True)
    return categories


@contextlib.contextmanager
def _working_directory(directory):
    """Run there, so that a relative path a case passes (the sweep's
    ``memory="not-a-value"``) is created in the temporary directory."""
    previous = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(previous)


def _row(category, cases):
    if isinstance(cases, str):
        return f"{category:<52} {cases}"
    passing = sum(ok for _, ok, _ in cases)
    return f"{category:<52} {len(cases):>5} {passing:>7}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flips", type=int, default=40, help="bit flips tried")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs per target")
    parser.add_argument("--draws", type=int, default=150, help="parameter draws")
    parser.add_argument("--out", type=Path, default=RESULTS / "faults.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"advprune {advprune.__version__} from {Path(advprune.__file__).parent}")
    print(f"{'category':<52} {'tried':>5} {'passing':>7}")
    started = time.perf_counter()
    categories = run(args)
    tried = sum(len(c) for c in categories.values() if not isinstance(c, str))
    passing = sum(
        ok for c in categories.values() if not isinstance(c, str) for _, ok, _ in c
    )
    print(f"{'all':<52} {tried:>5} {passing:>7}")
    result = {
        "command": "python -m benchmarks.faults " + " ".join(argv or sys.argv[1:]),
        "advprune": str(Path(advprune.__file__).parent),
        "seconds": time.perf_counter() - started,
        "machine": platform.platform(),
        "tried": tried,
        "passing": passing,
        "categories": {
            name: cases
            if isinstance(cases, str)
            else [{"case": c, "passed": bool(ok), "outcome": d} for c, ok, d in cases]
            for name, cases in categories.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(args.out) as temporary, open(temporary, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
