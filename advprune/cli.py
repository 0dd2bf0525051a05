"""The ``advprune`` command: the demo, and the method step by step on files.

``advprune demo`` runs :func:`advprune.demo.run_demo` on the embedded digits.
For real data the method is split into steps that exchange ``.npy`` files, so
that the expensive one (the scoring training run) runs once and the cheap ones
(extrapolation, selection) can be repeated with other settings::

    advprune score X.npy y.npy --out-dir run/    # score a subset, extrapolate, embed
    advprune prune run/all_scores.npy -o run/kept.npy --prune-ratio 0.5
    advprune extrapolate run/embeddings.npy run/scores.npy \\
        run/scored_indices.npy -o run/knn32.npy --n-neighbors 32   # optional

Each command composes the same public stages as
:class:`advprune.AdversarialPruner` (``score`` runs the pruner itself), so the
same settings and seed give the same scores on the command line and in Python.

Inputs are ``.npy`` files, memory-mapped, or ``.npz`` archives read by key;
``uint8`` images are scaled to [0, 1] (and moved to channels-first) batch by
batch as they are read. Outputs are ``.npy`` files written with
``allow_pickle=False`` to a temporary file next to the target and renamed over
it, so an interrupted run never leaves a truncated file under the final name;
the disk space of a file written through a memory map is reserved first, so a
full disk is an error message, not a crash. The four outputs of ``score`` are
committed as one unit with a manifest, which ``extrapolate`` checks.

Every failure a user can cause or meet is one line on stderr, ``advprune:
error: ...`` or ``advprune: interrupted``, and an exit status: 2 for bad
arguments, unreadable or bad input files, outputs that cannot be written (no
permission, a full disk), a missing device or too little memory; 130 when
interrupted (Ctrl-C, SIGINT); 143 when terminated (SIGTERM). Every check that
does not need the trained model, the writability of the outputs included,
runs before the scoring run. Status 1 with a traceback is an error in
advprune itself, to report.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ._io import (
    MANIFEST,
    check_free_space,
    check_manifest,
    check_writable,
    open_memmap,
    replacing,
    replacing_all,
    write_npy,
)

__all__ = ["main"]

# What np.load and reading an .npz member raise for a damaged, truncated or
# pickled file.
_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)
# Rows embedded or extrapolated per step: bounds memory for pools of any size
# and sets the granularity of the progress bars.
_CHUNK_ROWS = 65536
_X_KEYS = ("image", "X")
_Y_KEYS = ("label", "y")


# The exit statuses of the failures main() reports in one line; 128 + the
# signal number, as shells report a process ended by the signal.
_EXIT_ERROR = 2
_EXIT_INTERRUPTED = 128 + signal.SIGINT
_EXIT_TERMINATED = 128 + signal.SIGTERM
_SCORE_OUTPUTS = (
    "embeddings.npy",
    "scores.npy",
    "scored_indices.npy",
    "all_scores.npy",
)


class _UsageError(Exception):
    """A bad argument or input file; reported in one line, exit status 2."""


class _Terminated(BaseException):
    """SIGTERM, raised where the process is, so that temporary files are
    removed on the way out; a BaseException, as KeyboardInterrupt is, so that
    no ``except Exception`` on the way catches it."""


class _Parser(argparse.ArgumentParser):
    # argparse prints a usage block before the message; one line per error is
    # easier to read in logs of batch jobs, and --help has the usage.
    def error(self, message):
        raise _UsageError(f"{message} (see '{self.prog} --help')")


# -- files ----------------------------------------------------------------------


def _save_npy(path, array):
    array = np.asarray(array)
    with _writing(path), replacing(path) as temporary:
        write_npy(temporary, [array], array.shape, array.dtype)


@contextlib.contextmanager
def _writing(path):
    """Report a failed write (full disk, no permission) as the one line of a
    usage error that names ``path``, not the temporary file."""
    try:
        yield
    except OSError as exc:
        raise _UsageError(
            f"cannot write {str(path)!r}: {exc.strerror or _one_line(exc)}"
        ) from None


def _check_writable(directory, what):
    try:
        check_writable(directory)
    except OSError as exc:
        raise _UsageError(
            f"{what} {str(directory)!r} cannot be written: "
            f"{exc.strerror or _one_line(exc)}"
        ) from None


def _check_output(path):
    path = Path(path)
    if not path.parent.is_dir():
        raise _UsageError(f"output directory {str(path.parent)!r} does not exist")
    if path.is_dir():
        raise _UsageError(f"output {str(path)!r} is a directory, not a file")
    _check_writable(path.parent, "output directory")
    return path


def _as_model_input(array):
    """Present ``uint8`` images as float32 in [0, 1], channels first (lazily,
    an :class:`advprune.datasets.ImageArray`); other arrays as they are.

    A 4-D ``uint8`` array whose last axis has 1 or 3 channels and whose second
    axis does not is taken to be channels-last (the layout of published
    generated pools, (N, 32, 32, 3)).
    """
    if array.dtype != np.uint8 or array.ndim != 4:
        return array
    from .datasets import ImageArray

    channels_last = array.shape[-1] in (1, 3) and array.shape[1] not in (1, 3)
    return ImageArray(array, layout="NHWC" if channels_last else "NCHW")


def _load(path, *, what, key=None, keys=()):
    """Read a numeric array from a ``.npy`` (memory-mapped) or ``.npz`` file.

    For an ``.npz``, ``key`` names the array; without it the first of ``keys``
    present is used. Pickled data is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise _UsageError(f"{what} file {str(path)!r} does not exist")
    try:
        loaded = np.load(path, mmap_mode="r", allow_pickle=False)
    except _READ_ERRORS as exc:
        raise _UsageError(
            f"cannot read {what} file {str(path)!r} as .npy/.npz without "
            f"unpickling: {_one_line(exc)}"
        ) from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            wanted = [key] if key is not None else [k for k in keys if k in loaded]
            if not wanted or wanted[0] not in loaded:
                named = key if key is not None else " or ".join(map(repr, keys))
                raise _UsageError(
                    f"{what} file {str(path)!r} has no array {named}; it holds "
                    f"{sorted(loaded.files)}"
                )
            try:
                array = loaded[wanted[0]]
            except _READ_ERRORS as exc:
                raise _UsageError(
                    f"cannot read {wanted[0]!r} of {str(path)!r} without "
                    f"unpickling; it is truncated, corrupt or pickled: "
                    f"{_one_line(exc)}"
                ) from None
            # NpzFile returns a member that is not in the .npy format (a
            # pickle, say) as its raw bytes.
            if not isinstance(array, np.ndarray):
                raise _UsageError(
                    f"{wanted[0]!r} of {str(path)!r} is not a .npy array; it is "
                    "not read"
                )
    else:
        array = loaded
    if array.dtype.kind not in "biuf":
        raise _UsageError(
            f"{what} file {str(path)!r} must hold a numeric array; got dtype "
            f"{array.dtype}"
        )
    return array


def _check_written_together(paths, remedy):
    """Refuse input files that the manifest beside them, written with them,
    does not describe: files of different runs, as an interrupted one leaves."""
    for path in map(Path, paths):
        check_manifest(path.parent / MANIFEST, [path.name], remedy=remedy)


def _load_labels(path, *, key, n_rows, what="labels"):
    y = _load(path, what=what, key=key, keys=_Y_KEYS)
    if y.ndim != 1 or len(y) != n_rows:
        raise _UsageError(
            f"{what} in {str(path)!r} must have shape ({n_rows},), one per row; "
            f"got {y.shape}"
        )
    return np.asarray(y)


def _one_line(exc):
    return " ".join(str(exc).split())


# -- argument types -------------------------------------------------------------


def _fraction(low_closed, high_closed):
    low, high = ("[" if low_closed else "("), ("]" if high_closed else ")")

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a number in {low}0, 1{high}; got {text!r}"
            ) from None
        above = value >= 0 if low_closed else value > 0
        below = value <= 1 if high_closed else value < 1
        if not (above and below):
            raise argparse.ArgumentTypeError(f"must be in {low}0, 1{high}; got {text}")
        return value

    return parse


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer; got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text}")
    return value


def _positive_int_or_none(text):
    """A positive integer, or ``none`` for the pruner's ``None``."""
    if text.lower() == "none":
        return None
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or 'none'; got {text!r}"
        ) from None


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number; got {text!r}") from None
    if not value >= 0 or not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a number >= 0; got {text}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number; got {text!r}") from None
    if not value > 0 or not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a number > 0; got {text}")
    return value


def _subset_size(text):
    """A fraction in (0, 1] when written with a point or exponent, else a count."""
    if text.isdigit():
        return _positive_int(text)
    return _fraction(False, True)(text)


# -- commands -------------------------------------------------------------------


def _cmd_demo(args):
    from .demo import run_demo

    run_demo(
        output_dir=args.output_dir,
        random_state=args.random_state,
        verbose=not args.quiet,
    )


def _scoring_params(args):
    """The pruner's parameters that `_add_scoring_options` sets."""
    return {
        "importance": args.importance,
        "extrapolation": args.extrapolation,
        "subset_size": args.subset_size,
        "epochs": args.epochs,
        "eps": args.eps,
        "norm": args.norm,
        "attack_steps": args.attack_steps,
        "train_attack_steps": args.train_attack_steps,
        "batch_size": args.batch_size,
        "min_steps": args.min_steps,
        "device": args.device,
        "checkpoint_dir": args.checkpoint_dir,
        "random_state": args.random_state,
        "verbose": not args.quiet,
    }


def _cmd_score(args):
    X = _as_model_input(_load(args.X, what="X", key=args.X_key, keys=_X_KEYS))
    if X.ndim < 2:
        raise _UsageError(
            f"X must have shape (n_samples, n_features) or (n_samples, "
            f"*sample_shape); got {X.shape}"
        )
    if args.y is None and not zipfile.is_zipfile(args.X):
        raise _UsageError("no labels: pass y, or an .npz X that holds them")
    labels = args.y if args.y is not None else args.X
    y = _load_labels(labels, key=args.y_key, n_rows=X.shape[0])
    # A pool of `advprune convert`: images and labels of one conversion.
    _check_written_together([args.X, labels], remedy="convert the pool again")
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise _UsageError(f"--out-dir {str(out_dir)!r} is not a directory")
    _check_writable(out_dir, "--out-dir")
    if args.checkpoint_dir is not None:
        _check_writable(args.checkpoint_dir, "--checkpoint-dir")

    from .pruning import AdversarialPruner

    verbose = not args.quiet
    # The pruner's own fit, so that the scores are those of the Python API for
    # the same settings and seed; the ratio only matters to `advprune prune`.
    pruner = AdversarialPruner(
        prune_ratio=0.0, chunk_size=_CHUNK_ROWS, **_scoring_params(args)
    ).fit(X, y)
    subset = pruner.subset_indices_
    with _writing(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        with replacing_all(
            [out_dir / name for name in _SCORE_OUTPUTS], manifest=out_dir / MANIFEST
        ) as (embeddings_file, *others):
            dim = pruner.embed(X[:1]).shape[1]
            embeddings = open_memmap(
                embeddings_file, dtype=np.float32, shape=(X.shape[0], dim)
            )
            pruner.embed(X, out=embeddings)
            embeddings.flush()
            del embeddings
            arrays = (pruner.scores_[subset], subset.astype(np.int64), pruner.scores_)
            for temporary, array in zip(others, arrays, strict=True):
                write_npy(temporary, [array], array.shape, array.dtype)
    if verbose:
        print(
            f"scored {len(subset)} of {X.shape[0]} samples directly in "
            f"{pruner.timings_['scoring']:.1f} s and extrapolated the rest; wrote "
            f"scores.npy, scored_indices.npy, all_scores.npy and embeddings.npy "
            f"to {out_dir}"
        )


def _cmd_extrapolate(args):
    output = _check_output(args.output)
    _check_written_together(
        [args.embeddings, args.scores, args.scored_indices],
        remedy="run `advprune score` again",
    )
    E = _load(args.embeddings, what="embeddings")
    if E.ndim != 2:
        raise _UsageError(
            f"embeddings must have shape (n_samples, n_features); got {E.shape}"
        )
    n = E.shape[0]
    scores = np.asarray(_load(args.scores, what="scores"), dtype=np.float64)
    indices = np.asarray(_load(args.scored_indices, what="scored indices"))
    if scores.ndim != 1 or indices.shape != scores.shape:
        raise _UsageError(
            f"scores and scored indices must be 1-D of the same length; got "
            f"shapes {scores.shape} and {indices.shape}"
        )
    if indices.dtype.kind not in "iu":
        raise _UsageError(f"scored indices must be integers; got dtype {indices.dtype}")
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise _UsageError(
            f"scored indices must be row numbers of the embeddings, in [0, {n})"
        )
    if len(np.unique(indices)) != len(indices):
        raise _UsageError("scored indices must not repeat a row")

    if args.n_neighbors > len(indices):
        raise _UsageError(
            f"--n-neighbors ({args.n_neighbors}) exceeds the number of scored "
            f"samples ({len(indices)})"
        )

    from .extrapolation import ImportanceExtrapolator, extrapolate

    with _writing(output), replacing(output) as temporary:
        all_scores = open_memmap(temporary, dtype=np.float64, shape=(n,))
        extrapolate(
            E,
            indices,
            scores,
            extrapolator=ImportanceExtrapolator(
                n_neighbors=args.n_neighbors, algorithm=args.algorithm
            ),
            chunk_size=_CHUNK_ROWS,
            out=all_scores,
            verbose=not args.quiet,
        )
        all_scores.flush()
        del all_scores
    if not args.quiet:
        print(
            f"extrapolated {n - len(indices)} scores from {len(indices)} scored "
            f"samples; wrote {output}"
        )


def _cmd_prune(args):
    output = _check_output(args.output)
    if args.hist is not None:
        _check_output(args.hist)
        from ._plots import require_matplotlib

        try:
            require_matplotlib("--hist")
        except ImportError as exc:
            raise _UsageError(str(exc)) from None
    scores = _load(args.scores, what="scores")
    if scores.ndim != 1:
        raise _UsageError(f"scores must be 1-D, one per sample; got {scores.shape}")
    if args.class_balanced and args.labels is None:
        raise _UsageError("--class-balanced needs --labels")
    y = None
    if args.labels is not None:
        y = _load_labels(args.labels, key=args.y_key, n_rows=len(scores))

    from .selection import select

    keep = select(
        scores,
        args.prune_ratio,
        rule=args.selection,
        y=y,
        class_balanced=args.class_balanced,
        random_state=args.random_state,
    )
    kept = np.flatnonzero(keep).astype(np.int64)
    _save_npy(output, kept)
    written = [output]
    if args.hist is not None:
        from ._plots import score_histogram

        rule = args.selection + (", class-balanced" if args.class_balanced else "")
        written.append(
            score_histogram(
                args.hist,
                scores,
                keep,
                threshold=args.selection == "lowest" and not args.class_balanced,
                title=f"{len(scores)} scores, prune ratio {args.prune_ratio:g} "
                f"({rule})",
            )
        )
    if not args.quiet:
        print(
            f"kept {len(kept)} of {len(scores)} samples; wrote "
            + " and ".join(map(str, written))
        )


def _sidecars(out):
    """The scores and kept indices written beside the pruned archive."""
    stem = out.name[: -len(".npz")] if out.name.endswith(".npz") else out.name
    return out.with_name(f"{stem}_scores.npy"), out.with_name(f"{stem}_kept.npy")


def _cmd_prune_pool(args):
    import tempfile

    from ._progress import progress_bar
    from .datasets import convert_npz_pool, load_pool
    from .datasets._pools import write_pruned_npz
    from .models import MODEL_NAMES
    from .pruning import AdversarialPruner
    from .selection import n_pruned
    from .training import resolve_device

    if args.model is not None and args.model not in MODEL_NAMES:
        raise _UsageError(
            f"argument --model: invalid choice: {args.model!r} (choose from "
            f"{', '.join(MODEL_NAMES)})"
        )
    pool = Path(args.pool)
    if not pool.is_file():
        raise _UsageError(f"pool file {str(pool)!r} does not exist")
    out = _check_output(args.out)
    outputs = [out, *_sidecars(out)]
    for path in outputs:
        if path.resolve() == pool.resolve():
            raise _UsageError(
                f"{str(path)!r} would overwrite the pool; the pool is never "
                "modified, choose another --out"
            )
    work_root = Path(args.work_dir) if args.work_dir else out.parent
    if not work_root.is_dir():
        raise _UsageError(f"--work-dir {str(work_root)!r} is not a directory")
    pruner = AdversarialPruner(
        prune_ratio=args.prune_ratio,
        model=args.model,
        method=args.method,
        lr=args.lr,
        chunk_size=args.chunk_size,
        **_scoring_params(args),
    )
    # Every parameter is checked before the pool is read or converted.
    pruner._validate_params()
    resolve_device(args.device)
    if args.checkpoint_dir is not None:
        _check_writable(args.checkpoint_dir, "--checkpoint-dir")
    verbose = not args.quiet

    with tempfile.TemporaryDirectory(
        dir=work_root, prefix=".advprune-prune-pool-"
    ) as work:
        work = Path(work)
        try:
            convert_npz_pool(pool, work, chunk_size=args.chunk_size, verbose=verbose)
        except OSError as exc:  # full disk, no permission
            raise _UsageError(_one_line(exc)) from None
        X, y = load_pool(work)
        n = len(y)
        n_kept = n - n_pruned(n, args.prune_ratio)
        try:
            check_free_space(
                out.parent, n_kept * (X.images[0].nbytes + 16), f"--out {str(out)!r}"
            )
        except OSError as exc:
            raise _UsageError(_one_line(exc)) from None
        pruner.fit(X, y)
        kept = pruner.sample_indices_.astype(np.int64)
        with (
            replacing_all(outputs) as (archive, scores, indices),
            progress_bar(
                total=len(kept), desc="writing", unit="image", verbose=verbose
            ) as bar,
        ):
            write_pruned_npz(archive, work, pool, kept, bar=bar)
            for path, array in ((scores, pruner.scores_), (indices, kept)):
                write_npy(path, [array], array.shape, array.dtype)
    if verbose:
        print(
            f"kept {len(kept)} of {n} images; wrote "
            + ", ".join(str(p) for p in outputs)
        )


# -- the parser -----------------------------------------------------------------


def _cmd_convert(args):
    from .datasets import convert_npz_pool

    try:
        images, labels = convert_npz_pool(
            args.npz,
            args.out_dir,
            image_key=args.image_key,
            label_key=args.label_key,
            chunk_size=args.chunk_size,
            verbose=not args.quiet,
        )
    except FileNotFoundError as exc:
        raise _UsageError(_one_line(exc)) from None
    except OSError as exc:  # full disk, no permission
        raise _UsageError(
            f"cannot write the pool to {str(args.out_dir)!r}: "
            f"{exc.strerror or _one_line(exc)}"
        ) from None
    if not args.quiet:
        print(f"wrote {images} and {labels}")


def _add_scoring_options(parser):
    """The options of the scoring run shared by `score` and `prune-pool`."""
    from .extrapolation import STRATEGIES
    from .scores import SCORES

    parser.add_argument(
        "--subset-size",
        type=_subset_size,
        default=0.1,
        help=(
            "scored subset: a fraction in (0, 1] or a count of samples "
            "(default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--importance",
        choices=sorted(SCORES),
        default="dynamic_uncertainty",
        help="importance score (default: %(default)s)",
    )
    parser.add_argument(
        "--extrapolation",
        choices=STRATEGIES,
        default="confidence",
        help=(
            "how unscored samples get their scores; 'confidence' needs "
            "--importance dynamic_uncertainty (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--epochs",
        type=_positive_int,
        default=20,
        help=(
            "epochs of the scoring run; dynamic_uncertainty needs more than "
            "its window of 10 (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--eps",
        type=_non_negative_float,
        default=8 / 255,
        help="attack budget in the input scale, [0, 1] for images (default: 8/255)",
    )
    parser.add_argument(
        "--norm",
        choices=("linf", "l2"),
        default="linf",
        help="attack norm (default: %(default)s)",
    )
    parser.add_argument(
        "--attack-steps",
        type=_positive_int,
        default=10,
        help=(
            "PGD steps of the attacks that measure samples (recording, "
            "confidence) (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--train-attack-steps",
        type=_positive_int_or_none,
        default=1,
        help=(
            "PGD steps of the scoring run's training attack; 'none': "
            "--attack-steps, as in the paper (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=128,
        help="training batch size (default: %(default)s)",
    )
    parser.add_argument(
        "--min-steps",
        type=_positive_int_or_none,
        default=320,
        help=(
            "at least this many optimizer steps in the scoring run, by a "
            "smaller batch; 'none': no floor, as in the paper (default: "
            "%(default)s)"
        ),
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1', ...",
    )
    parser.add_argument(
        "--random-state",
        type=int,
        default=0,
        help="seed of the subset, model and attacks (default: %(default)s)",
    )
    parser.add_argument(
        "--checkpoint-dir",
        help=(
            "save the scoring run there after every epoch; run the same command "
            "again to resume an interrupted run from its last epoch"
        ),
    )


def _build_parser():
    from . import __version__

    parser = _Parser(
        prog="advprune",
        description=(
            "Data pruning for adversarial training by importance extrapolation. "
            "Higher score = more important = kept."
        ),
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    demo = commands.add_parser(
        "demo",
        help="the whole method on the embedded digits, in a few minutes",
        description=(
            "Score a 10%% subset of a synthetic digits pool, extrapolate, prune "
            "50%%, then adversarially train on real + pruned, real + random and "
            "real + full pool; print clean and robust accuracy, write "
            "results.json, scores.png and accuracy.png."
        ),
    )
    demo.add_argument(
        "--output-dir",
        default="advprune-demo",
        help="directory for results.json and the plots (default: %(default)s)",
    )
    demo.add_argument(
        "--random-state",
        type=int,
        default=0,
        help="seed of data, subset, models and attacks (default: %(default)s)",
    )
    demo.add_argument("--quiet", action="store_true", help="no progress bars, no table")
    demo.set_defaults(handler=_cmd_demo)

    score = commands.add_parser(
        "score",
        help="score a random subset, extrapolate to every sample, embed every sample",
        description=(
            "Adversarially train on a class-stratified random subset of X, "
            "score its samples from the recorded training dynamics (higher = "
            "more important = kept), extrapolate the scores to every other "
            "sample, and embed ALL samples with the trained model's penultimate "
            "features, as AdversarialPruner does. Writes OUT_DIR/all_scores.npy "
            "(one score per row of X, the input of `advprune prune`), "
            "OUT_DIR/scores.npy (the subset's scores, on the scale of the "
            "strategy: confidence percentiles for 'confidence'), "
            "OUT_DIR/scored_indices.npy (their rows) and OUT_DIR/embeddings.npy "
            "(the inputs of `advprune extrapolate`, which re-extrapolates as "
            "--extrapolation knn does)."
        ),
    )
    score.add_argument(
        "X",
        help=(
            ".npy (memory-mapped) or .npz with the samples; uint8 images are "
            "scaled to [0, 1], (N, H, W, C) moved to (N, C, H, W)"
        ),
    )
    score.add_argument(
        "y",
        nargs="?",
        help="integer labels (.npy/.npz); omit to read them from X's .npz",
    )
    score.add_argument("--out-dir", required=True, help="output directory")
    score.add_argument(
        "--X-key",
        dest="X_key",
        help="array of X in an .npz (default: 'image', else 'X')",
    )
    score.add_argument(
        "--y-key", help="array of labels in an .npz (default: 'label', else 'y')"
    )
    _add_scoring_options(score)
    score.add_argument("--quiet", action="store_true", help="no progress bars")
    score.set_defaults(handler=_cmd_score)

    extrapolate = commands.add_parser(
        "extrapolate",
        help="predict the scores of unscored samples from their neighbours",
        description=(
            "Fit an ImportanceExtrapolator (mean score of the k nearest scored "
            "neighbours in the embedding) on the scored rows and predict every "
            "other row. Writes one score per row of EMBEDDINGS: the direct "
            "score where there is one, else the extrapolated one."
        ),
    )
    extrapolate.add_argument("embeddings", help=".npy of shape (n_samples, n_features)")
    extrapolate.add_argument("scores", help=".npy of direct scores, shape (m,)")
    extrapolate.add_argument(
        "scored_indices", help=".npy of the m scored rows of EMBEDDINGS"
    )
    extrapolate.add_argument(
        "-o", "--output", required=True, help="output .npy of shape (n_samples,)"
    )
    extrapolate.add_argument(
        "--n-neighbors",
        type=_positive_int,
        default=12,
        help="scored neighbours averaged per prediction (default: %(default)s)",
    )
    extrapolate.add_argument(
        "--algorithm",
        choices=("auto", "exact", "hnsw"),
        default="auto",
        help="neighbour search; hnsw is approximate (default: auto = exact)",
    )
    extrapolate.add_argument("--quiet", action="store_true", help="no progress bars")
    extrapolate.set_defaults(handler=_cmd_extrapolate)

    prune = commands.add_parser(
        "prune",
        help="select the samples to keep from their scores",
        description=(
            "Remove the PRUNE_RATIO fraction of samples; higher score = more "
            "important = kept. 'lowest' removes the lowest scores (the paper's "
            "rule); 'stratified' is coverage-centric selection (drop the "
            "highest-scored few percent, then keep samples evenly across score "
            "bins). Writes the sorted indices of the kept rows."
        ),
    )
    prune.add_argument("scores", help=".npy of one score per sample")
    prune.add_argument(
        "-o", "--output", required=True, help="output .npy of kept row indices"
    )
    prune.add_argument(
        "--prune-ratio",
        type=_fraction(True, False),
        default=0.5,
        help="fraction of samples REMOVED, in [0, 1) (default: %(default)s)",
    )
    prune.add_argument(
        "--labels", help="integer labels (.npy/.npz), for --class-balanced"
    )
    prune.add_argument(
        "--y-key", help="array of labels in an .npz (default: 'label', else 'y')"
    )
    prune.add_argument(
        "--class-balanced",
        action="store_true",
        help="apply the rule within each class (needs --labels)",
    )
    prune.add_argument(
        "--selection",
        choices=("lowest", "stratified"),
        default="lowest",
        help="selection rule (default: %(default)s)",
    )
    prune.add_argument(
        "--random-state",
        type=int,
        default=0,
        help="seed of the draws of 'stratified' (default: %(default)s)",
    )
    prune.add_argument(
        "--hist",
        metavar="PATH.png",
        help=(
            "also write a histogram of the scores, kept against pruned, with "
            "the threshold of the 'lowest' rule marked (needs matplotlib, the "
            "'plot' extra)"
        ),
    )
    prune.add_argument("--quiet", action="store_true", help="no summary line")
    prune.set_defaults(handler=_cmd_prune)

    convert = commands.add_parser(
        "convert",
        help="convert a generated pool .npz into memory-mappable .npy files",
        description=(
            "Convert a generated pool in the published .npz layout (image: "
            "uint8 (N, 32, 32, 3), label) once into OUT_DIR/images.npy and "
            "OUT_DIR/labels.npy, which open as memory maps. Streams the archive "
            "chunk by chunk and writes each file atomically."
        ),
    )
    convert.add_argument("npz", help="the pool archive (.npz)")
    convert.add_argument("out_dir", help="directory for images.npy and labels.npy")
    convert.add_argument(
        "--image-key", default="image", help="image array (default: %(default)s)"
    )
    convert.add_argument(
        "--label-key", default="label", help="label array (default: %(default)s)"
    )
    convert.add_argument(
        "--chunk-size",
        type=_positive_int,
        default=65536,
        help="images per block written (default: %(default)s)",
    )
    convert.add_argument(
        "--quiet", action="store_true", help="no progress bar, no summary line"
    )
    convert.set_defaults(handler=_cmd_convert)

    prune_pool = commands.add_parser(
        "prune-pool",
        help="the whole method on a generated pool .npz: write the pruned .npz",
        description=(
            "Prune a generated pool in the published .npz layout (image: uint8 "
            "(N, H, W, C), label) in one go: convert it once to memory-mapped "
            ".npy files in a temporary directory, score a random subset by an "
            "adversarial training run, extrapolate the scores to every image, "
            "remove the PRUNE_RATIO fraction with the lowest scores, and write "
            "the kept images and labels to PRUNED.npz in the same layout, plus "
            "PRUNED_scores.npy (the score of every pool image) and "
            "PRUNED_kept.npy (the sorted row numbers of the kept images in "
            "POOL). Streams the "
            "pool chunk by chunk, so pools larger than memory work; every "
            "output is written atomically; POOL is never modified."
        ),
    )
    prune_pool.add_argument("pool", help="the pool archive (.npz)")
    prune_pool.add_argument(
        "--out", required=True, metavar="PRUNED.npz", help="the pruned archive"
    )
    prune_pool.add_argument(
        "--prune-ratio",
        type=_fraction(True, False),
        default=0.5,
        help="fraction of images REMOVED, in [0, 1) (default: %(default)s)",
    )
    prune_pool.add_argument(
        "--model",
        help=(
            "network of the scoring run: small-cnn, preact-resnet18, wrn-28-10 "
            "or mlp (default: preact-resnet18 for 32x32 colour images, "
            "small-cnn for other sizes)"
        ),
    )
    prune_pool.add_argument(
        "--method",
        choices=("pgd", "trades", "standard"),
        default="pgd",
        help="training method of the scoring run (default: %(default)s)",
    )
    prune_pool.add_argument(
        "--lr",
        type=_positive_float,
        default=0.05,
        help="learning rate of the scoring run (default: %(default)s)",
    )
    _add_scoring_options(prune_pool)
    prune_pool.add_argument(
        "--chunk-size",
        type=_positive_int,
        default=8192,
        help=(
            "images converted, embedded and extrapolated at a time; bounds the "
            "memory (8,192 images of 32x32x3 are 100 MB as float32) "
            "(default: %(default)s)"
        ),
    )
    prune_pool.add_argument(
        "--work-dir",
        help=(
            "where the temporary converted pool goes, removed at the end "
            "(default: the directory of --out)"
        ),
    )
    prune_pool.add_argument("--quiet", action="store_true", help="no progress bars")
    prune_pool.set_defaults(handler=_cmd_prune_pool)
    return parser


def main(argv=None):
    """Run the ``advprune`` command.

    Parameters
    ----------
    argv : list of str or None, default=None
        The arguments after the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    int
        Exit status: 0 on success; 2 on bad arguments or input data, outputs
        that cannot be written, a missing device or too little memory; 130
        when interrupted (SIGINT); 143 when terminated (SIGTERM). Each failure
        is one line on stderr, ``advprune: error: ...`` or ``advprune:
        interrupted``.

    Examples
    --------
    >>> from advprune.cli import main
    >>> main(["prune", "missing.npy", "-o", "kept.npy"])
    2
    """
    try:
        with _sigterm_raises():
            args = _build_parser().parse_args(argv)
            args.handler(args)
    except _UsageError as exc:
        return _fail(str(exc))
    except (ValueError, TypeError) as exc:
        # The estimators validate their inputs with these before any work;
        # their messages name the parameter, which is all a user needs.
        return _fail(_one_line(exc))
    except OSError as exc:
        return _fail(_one_line(exc))
    except MemoryError as exc:
        return _fail(f"out of memory: {_one_line(exc) or 'MemoryError'}")
    except KeyboardInterrupt:
        print("advprune: interrupted", file=sys.stderr)
        return _EXIT_INTERRUPTED
    except _Terminated:
        print("advprune: terminated", file=sys.stderr)
        return _EXIT_TERMINATED
    except Exception as exc:
        if not _is_out_of_memory(exc):
            raise
        return _fail(
            f"out of memory on the device: {_one_line(exc)}; lower --batch-size"
        )
    return 0


def _fail(message):
    print(f"advprune: error: {message}", file=sys.stderr)
    return _EXIT_ERROR


def _is_out_of_memory(exc):
    # torch is imported only by the commands that train or embed.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError)


@contextlib.contextmanager
def _sigterm_raises():
    """Turn SIGTERM, which batch schedulers send before SIGKILL, into an
    exception while the command runs, so that its temporary files are
    removed; the previous handler is put back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum, frame):
    raise _Terminated


if __name__ == "__main__":
    sys.exit(main())
