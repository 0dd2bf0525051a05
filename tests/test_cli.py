"""The ``advprune`` command, run as a subprocess on tiny files."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from advprune._io import replacing
from advprune.cli import _as_model_input, main
from advprune.extrapolation import ImportanceExtrapolator
from advprune.selection import select_lowest

SUBCOMMANDS = ["demo", "score", "extrapolate", "prune", "convert", "prune-pool"]


def run_cli(*args, cwd):
    # One torch thread: the tiny models here gain nothing from a second one,
    # and on a busy machine each operator would wait for the descheduled one.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "advprune.cli", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_usage_error(result, *fragments):
    """Exit status 2, one line on stderr naming the problem, no traceback."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("advprune: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    """Tiny flat data, two imbalanced classes, and one `score` run on it."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(120, 4)).astype(np.float32)
    y = (X[:, 0] + 0.3 * X[:, 1] > 0.75).astype(np.int64)
    np.save(root / "X.npy", X)
    np.save(root / "y.npy", y)
    result = run_cli(
        "score", "X.npy", "y.npy", "--out-dir", "run", "--subset-size", "0.5",
        "--importance", "frequency", "--extrapolation", "knn", "--epochs", "3",
        "--attack-steps", "1",
        "--eps", "0.05", "--batch-size", "32", "--device", "cpu", "--quiet",
        cwd=root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return root, X, y


def load(path):
    return np.load(path, allow_pickle=False)


def test_score_writes_subset_scores_and_embeddings_of_all_rows(flat):
    root, X, y = flat
    scores = load(root / "run" / "scores.npy")
    indices = load(root / "run" / "scored_indices.npy")
    embeddings = load(root / "run" / "embeddings.npy")
    assert indices.dtype == np.int64 and scores.dtype == np.float64
    assert indices.shape == scores.shape == (60,)
    assert np.array_equal(indices, np.unique(indices))
    assert indices.min() >= 0 and indices.max() < len(X)
    # The subset is stratified by class.
    assert abs(y[indices].mean() - y.mean()) < 0.05
    assert np.isfinite(scores).all() and scores.std() > 0
    assert embeddings.dtype == np.float32 and embeddings.shape[0] == len(X)
    assert np.isfinite(embeddings).all()
    assert len(np.unique(embeddings, axis=0)) == len(X)
    # No temporary files are left behind.
    assert sorted(p.name for p in (root / "run").iterdir()) == [
        "advprune-manifest.json",
        "all_scores.npy",
        "embeddings.npy",
        "scored_indices.npy",
        "scores.npy",
    ]


def test_cli_scores_are_the_python_apis(flat):
    """Same settings and seed: `score`, `extrapolate` and `prune` give exactly
    the scores and kept rows of AdversarialPruner."""
    from advprune import AdversarialPruner

    root, X, y = flat
    run = root / "run"
    pruner = AdversarialPruner(
        prune_ratio=0.5, importance="frequency", extrapolation="knn",
        subset_size=0.5, epochs=3,
        attack_steps=1, eps=0.05, batch_size=32, device="cpu", random_state=0,
    ).fit(X, y)  # fmt: skip
    np.testing.assert_array_equal(load(run / "all_scores.npy"), pruner.scores_)
    np.testing.assert_array_equal(
        load(run / "scored_indices.npy"), pruner.subset_indices_
    )
    result = run_cli(
        "extrapolate", run / "embeddings.npy", run / "scores.npy",
        run / "scored_indices.npy", "-o", run / "again.npy", cwd=root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(load(run / "again.npy"), pruner.scores_)
    result = run_cli(
        "prune", run / "all_scores.npy", "-o", run / "half.npy", "--prune-ratio",
        "0.5", cwd=root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(load(run / "half.npy"), pruner.sample_indices_)


def test_extrapolate_then_prune_matches_the_library(flat):
    root, X, y = flat
    run = root / "run"
    result = run_cli(
        "extrapolate", run / "embeddings.npy", run / "scores.npy",
        run / "scored_indices.npy", "-o", run / "all.npy", "--n-neighbors", "5",
        cwd=root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "extrapolated 60 scores from 60 scored samples" in result.stdout

    E = load(run / "embeddings.npy")
    scores = load(run / "scores.npy")
    indices = load(run / "scored_indices.npy")
    all_scores = load(run / "all.npy")
    assert all_scores.shape == (len(X),) and all_scores.dtype == np.float64
    assert np.array_equal(all_scores[indices], scores)
    unscored = np.setdiff1d(np.arange(len(X)), indices)
    expected = ImportanceExtrapolator(n_neighbors=5).fit(E[indices], scores)
    np.testing.assert_allclose(all_scores[unscored], expected.predict(E[unscored]))

    result = run_cli(
        "prune", run / "all.npy", "-o", run / "kept.npy", "--prune-ratio", "0.75",
        cwd=root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    kept = load(run / "kept.npy")
    assert kept.dtype == np.int64 and len(kept) == 120 - 90
    assert np.array_equal(kept, np.flatnonzero(select_lowest(all_scores, 0.75)))
    # Higher score = kept: every kept score is at least every pruned one.
    pruned = np.setdiff1d(np.arange(len(X)), kept)
    assert all_scores[kept].min() >= all_scores[pruned].max()


def test_prune_class_balanced_keeps_counts_per_class(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    scores = np.arange(10, dtype=np.float64)[::-1].copy()
    y = np.array([0] * 8 + [1] * 2)
    np.save("s.npy", scores)
    np.save("y.npy", y)
    argv = ["prune", "s.npy", "-o", "kept.npy", "--prune-ratio", "0.5"]
    assert main([*argv, "--labels", "y.npy", "--class-balanced", "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    # Class 0 has scores 9..2 at rows 0..7: its four highest are rows 0..3;
    # class 1 keeps the higher of its two (row 8, score 1).
    assert load("kept.npy").tolist() == [0, 1, 2, 3, 8]
    assert main(argv) == 0
    assert load("kept.npy").tolist() == [0, 1, 2, 3, 4]
    assert "kept 5 of 10 samples" in capsys.readouterr().out


def test_prune_writes_a_histogram_with_the_threshold(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    np.save("s.npy", np.random.default_rng(0).gamma(2.0, size=500))
    argv = ["prune", "s.npy", "-o", "kept.npy", "--prune-ratio", "0.3"]
    assert main([*argv, "--hist", "hist.png"]) == 0
    assert "wrote kept.npy and hist.png" in capsys.readouterr().out
    assert (tmp_path / "hist.png").read_bytes().startswith(b"\x89PNG")
    # Without matplotlib: one line naming the extra, before anything is written.
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert main([*argv[:2], "-o", "other.npy", "--hist", "h.png"]) == 2
    assert_usage_error(
        subprocess.CompletedProcess(argv, 2, "", capsys.readouterr().err),
        "'plot' extra",
    )
    assert not (tmp_path / "other.npy").exists()


def test_prune_stratified_is_reproducible(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("s.npy", np.random.default_rng(0).normal(size=200))
    argv = ["prune", "s.npy", "--selection", "stratified", "--prune-ratio", "0.7"]
    for name in ("a.npy", "b.npy"):
        assert main([*argv, "-o", name, "--random-state", "3", "--quiet"]) == 0
    assert main([*argv, "-o", "c.npy", "--random-state", "4", "--quiet"]) == 0
    a, b, c = load("a.npy"), load("b.npy"), load("c.npy")
    assert len(a) == 60 and np.array_equal(a, b) and not np.array_equal(a, c)


def test_score_reads_a_uint8_channels_last_pool_from_npz(tmp_path, monkeypatch):
    # In process: a second subprocess would spend its time importing torch.
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(40, 8, 8, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(4, dtype=np.uint8), 10)
    np.savez("pool.npz", image=images, label=labels)
    argv = ["score", "pool.npz", "--out-dir", "out", "--subset-size", "20"]
    argv += [
        "--importance",
        "frequency",
        "--extrapolation",
        "knn",
        "--epochs",
        "2",
        "--attack-steps",
        "1",
    ]
    assert main([*argv, "--device", "cpu", "--quiet"]) == 0
    assert load("out/scores.npy").shape == (20,)
    embeddings = load("out/embeddings.npy")
    assert embeddings.shape[0] == 40 and np.isfinite(embeddings).all()


def test_uint8_images_are_scaled_and_moved_channels_first():
    raw = np.arange(5 * 4 * 2 * 3, dtype=np.uint8).reshape(5, 4, 2, 3)
    X = _as_model_input(raw)
    assert X.shape == (5, 3, 4, 2) and X.dtype == np.float32
    expected = np.moveaxis(raw, -1, 1).astype(np.float32) / 255
    np.testing.assert_array_equal(X[1:4], expected[1:4])
    np.testing.assert_array_equal(X[np.array([4, 0])], expected[[4, 0]])
    np.testing.assert_array_equal(X[2], expected[2])
    np.testing.assert_array_equal(np.asarray(X), expected)
    # Channels-first uint8 images are only scaled; other dtypes pass through.
    first = np.zeros((5, 3, 4, 4), dtype=np.uint8) + 255
    assert _as_model_input(first).shape == (5, 3, 4, 4)
    assert _as_model_input(first)[0].max() == 1.0
    floats = np.zeros((5, 4, 4, 3), dtype=np.float32)
    assert _as_model_input(floats) is floats


@pytest.mark.parametrize("command", [[]] + [[c] for c in SUBCOMMANDS])
def test_help_exits_zero(command, tmp_path):
    result = run_cli(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: advprune")
    assert result.stderr == ""


@pytest.fixture()
def files(tmp_path):
    y6 = np.arange(6) % 2
    np.save(tmp_path / "scores.npy", np.linspace(0, 1, 6))
    np.save(tmp_path / "scores2d.npy", np.zeros((6, 2)))
    np.save(tmp_path / "labels5.npy", np.zeros(5, dtype=np.int64))
    np.save(tmp_path / "E.npy", np.zeros((6, 3), dtype=np.float32))
    np.save(tmp_path / "idx.npy", np.array([0, 9]))
    np.save(tmp_path / "idx_ok.npy", np.array([0, 1]))
    np.save(tmp_path / "s2.npy", np.array([0.5, 0.7]))
    np.save(tmp_path / "X.npy", np.zeros((6, 2), dtype=np.float32))
    np.save(tmp_path / "y_one_class.npy", np.zeros(6, dtype=np.int64))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}] * 6), allow_pickle=True)
    with open(tmp_path / "pickled.npy", "wb") as f:
        pickle.dump(np.zeros(6), f)
    np.savez(tmp_path / "pool.npz", image=np.zeros((6, 8, 8, 3), np.uint8), label=y6)
    np.savez(tmp_path / "float_pool.npz", image=np.zeros((6, 8, 8, 3)), label=y6)
    return tmp_path


BAD_ARGUMENTS = {
    "missing file": (["prune", "nope.npy", "-o", "k.npy"], "does not exist"),
    "ratio above 1": (
        ["prune", "scores.npy", "-o", "k.npy", "--prune-ratio", "1.5"],
        "--prune-ratio",
    ),
    "ratio of 1": (
        ["prune", "scores.npy", "-o", "k.npy", "--prune-ratio", "1"],
        "[0, 1)",
    ),
    "pickle file": (["prune", "pickled.npy", "-o", "k.npy"], "unpickling"),
    "object array": (["prune", "objects.npy", "-o", "k.npy"], "objects.npy"),
    "2-D scores": (["prune", "scores2d.npy", "-o", "k.npy"], "1-D"),
    "labels of wrong length": (
        ["prune", "scores.npy", "-o", "k.npy", "--labels", "labels5.npy"],
        "(6,)",
    ),
    "class-balanced without labels": (
        ["prune", "scores.npy", "-o", "k.npy", "--class-balanced"],
        "--labels",
    ),
    "missing output directory": (
        ["prune", "scores.npy", "-o", "no/such/dir/k.npy"],
        "does not exist",
    ),
    "missing histogram directory": (
        ["prune", "scores.npy", "-o", "k.npy", "--hist", "no/such/dir/h.png"],
        "does not exist",
    ),
    "missing required option": (["prune", "scores.npy"], "-o/--output"),
    "min steps neither integer nor none": (
        ["score", "X.npy", "y.npy", "--out-dir", "o", "--min-steps", "few"],
        "'none'",
    ),
    "unknown command": (["shrink"], "invalid choice"),
    "scored index out of range": (
        ["extrapolate", "E.npy", "s2.npy", "idx.npy", "-o", "all.npy"],
        "[0, 6)",
    ),
    "more neighbours than scored samples": (
        ["extrapolate", "E.npy", "s2.npy", "idx_ok.npy", "-o", "all.npy"],
        "--n-neighbors",
    ),
    "1-D X": (["score", "scores.npy", "labels5.npy", "--out-dir", "o"], "X must"),
    "labels missing from .npy X": (["score", "X.npy", "--out-dir", "o"], "labels"),
    "prune-pool of a missing pool": (
        ["prune-pool", "nope.npz", "--out", "p.npz"],
        "does not exist",
    ),
    "prune-pool over its pool": (
        ["prune-pool", "pool.npz", "--out", "pool.npz"],
        "never modified",
    ),
    "prune-pool of float images": (
        ["prune-pool", "float_pool.npz", "--out", "p.npz", "--device", "cpu"],
        "uint8",
    ),
    "prune-pool with an unknown model": (
        ["prune-pool", "pool.npz", "--out", "p.npz", "--model", "resnet"],
        "--model",
    ),
    "prune-pool with lr 0": (
        ["prune-pool", "pool.npz", "--out", "p.npz", "--lr", "0"],
        "--lr",
    ),
    "bad subset size": (
        ["score", "X.npy", "labels5.npy", "--out-dir", "o", "--subset-size", "1.5"],
        "--subset-size",
    ),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS, ids=list(BAD_ARGUMENTS))
def test_bad_arguments_exit_2_with_one_line(case, files, capsys, monkeypatch):
    # In process, for speed; the next test checks the same through the script.
    argv, fragment = BAD_ARGUMENTS[case]
    monkeypatch.chdir(files)
    before = sorted(p.name for p in files.iterdir())
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert_usage_error(
        subprocess.CompletedProcess(argv, 2, captured.out, captured.err), fragment
    )
    assert sorted(p.name for p in files.iterdir()) == before


@pytest.mark.parametrize(
    "case", ["missing file", "pickle file", "ratio above 1", "unknown command"]
)
def test_bad_arguments_through_the_script(case, files):
    argv, fragment = BAD_ARGUMENTS[case]
    result = run_cli(*argv, cwd=files)
    assert_usage_error(result, fragment)
    assert "Traceback" not in result.stderr
    assert not (files / "k.npy").exists()


def test_estimator_value_error_exits_2(files, capsys, monkeypatch):
    # Raised by AdversarialPruner's validation, before any training.
    monkeypatch.chdir(files)
    argv = ["score", "X.npy", "y_one_class.npy", "--out-dir", "o", "--quiet"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert_usage_error(
        subprocess.CompletedProcess(argv, 2, captured.out, captured.err),
        "two classes",
    )
    assert not (files / "o").exists()


def test_main_returns_the_exit_status(files, capsys, monkeypatch):
    monkeypatch.chdir(files)
    assert main(["prune", "scores.npy", "-o", "kept.npy", "--quiet"]) == 0
    assert load(files / "kept.npy").tolist() == [3, 4, 5]
    assert main(["prune", "scores.npy", "-o", "kept.npy", "--prune-ratio", "x"]) == 2
    assert capsys.readouterr().err.startswith("advprune: error: argument")


def test_demo_command_passes_its_options(monkeypatch):
    import advprune.demo

    calls = []
    monkeypatch.setattr(advprune.demo, "run_demo", lambda **kw: calls.append(kw))
    assert main(["demo", "--output-dir", "out", "--random-state", "3", "--quiet"]) == 0
    assert calls == [{"output_dir": "out", "random_state": 3, "verbose": False}]


@pytest.mark.parametrize(
    "command",
    [
        ["score", "X.npy", "y.npy", "--out-dir", "out"],
        ["prune-pool", "p.npz", "--out", "o.npz"],
    ],
)
def test_scoring_options_default_to_the_pruners_defaults(command):
    # The CLI shows progress and seeds 0 by default (the same command writes
    # the same files); every other default is the pruner's.
    from advprune import AdversarialPruner
    from advprune.cli import _build_parser, _scoring_params

    args = _build_parser().parse_args(command)
    params = _scoring_params(args)
    assert params.pop("verbose") is True
    assert params.pop("random_state") == 0
    defaults = AdversarialPruner().get_params()
    assert params == {name: defaults[name] for name in params}


def test_none_lifts_the_step_floor_and_trains_with_the_measuring_attack():
    from advprune.cli import _build_parser, _scoring_params

    args = _build_parser().parse_args(
        ["score", "X.npy", "--out-dir", "o"]
        + ["--min-steps", "none", "--train-attack-steps", "None"]
    )
    params = _scoring_params(args)
    assert params["min_steps"] is None and params["train_attack_steps"] is None


def test_replacing_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "kept.npy"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), replacing(target) as temporary:
        temporary.write_bytes(b"half written")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["kept.npy"]
    with replacing(target) as temporary:
        temporary.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["kept.npy"]


def test_convert_writes_memmappable_pool(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 7)
    np.savez_compressed(tmp_path / "pool.npz", image=images, label=labels)
    result = run_cli("convert", "pool.npz", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # A progress bar by default; nothing with --quiet.
    assert "converting: 100%" in result.stderr and "7/7" in result.stderr
    quiet = run_cli("convert", "pool.npz", "out", "--quiet", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == quiet.stdout == ""
    stored = np.load(tmp_path / "out" / "images.npy", mmap_mode="r")
    assert isinstance(stored, np.memmap)
    np.testing.assert_array_equal(stored, images)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "labels.npy"), labels)

    missing = run_cli("convert", "absent.npz", "out2", cwd=tmp_path)
    assert_usage_error(missing, "absent.npz")
    assert not (tmp_path / "out2" / "images.npy").exists()


def _write_pool(path, n):
    """A generated pool in the published layout: n 32x32x3 uint8 images of
    ten noisy class templates, uint8 labels."""
    rng = np.random.default_rng(n)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    templates = rng.integers(40, 216, (10, 32, 32, 3), dtype=np.int16)
    noise = rng.integers(-40, 40, (n, 32, 32, 3), dtype=np.int16)
    np.savez(path, image=(templates[labels] + noise).astype(np.uint8), label=labels)


def _prune_pool_peak_rss(pool, out, cwd):
    """Run prune-pool in a fresh process; return its peak resident set (bytes
    on Linux are KiB in ru_maxrss)."""
    script = (
        "import resource, sys; from advprune.cli import main; "
        "status = main(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); "
        "sys.exit(status)"
    )
    argv = ["prune-pool", pool, "--out", out, "--prune-ratio", "0.3"]
    argv += ["--model", "mlp", "--subset-size", "100", "--epochs", "1"]
    argv += [
        "--importance",
        "mean_loss",
        "--extrapolation",
        "knn",
        "--attack-steps",
        "1",
    ]
    argv += ["--chunk-size", "1000", "--device", "cpu", "--quiet"]
    result = subprocess.run(
        [sys.executable, "-c", script, *argv],
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1]) * 1024


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
def test_prune_pool_writes_the_kept_images_with_memory_bounded_by_the_chunk(tmp_path):
    _write_pool(tmp_path / "pool.npz", 10_000)
    _write_pool(tmp_path / "large.npz", 20_000)
    pool_bytes = (tmp_path / "pool.npz").read_bytes()
    small = _prune_pool_peak_rss("pool.npz", "pruned.npz", tmp_path)
    large = _prune_pool_peak_rss("large.npz", "large_pruned.npz", tmp_path)

    with (
        np.load(tmp_path / "pool.npz") as pool,
        np.load(tmp_path / "pruned.npz") as pruned,
    ):
        kept = load(tmp_path / "pruned_kept.npy")
        scores = load(tmp_path / "pruned_scores.npy")
        assert sorted(pruned.files) == ["image", "label"]
        assert len(kept) == len(pruned["image"]) == len(pruned["label"]) == 7000
        assert pruned["image"].dtype == np.uint8 and pruned["label"].dtype == np.uint8
        np.testing.assert_array_equal(pruned["image"], pool["image"][kept])
        np.testing.assert_array_equal(pruned["label"], pool["label"][kept])
    # The 3,000 lowest scores are the ones pruned.
    assert scores.shape == (10_000,)
    assert scores[kept].min() >= np.delete(scores, kept).max()
    # The pool is untouched and the temporary converted copy is gone.
    assert (tmp_path / "pool.npz").read_bytes() == pool_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "large.npz", "large_pruned.npz", "large_pruned_kept.npy",
        "large_pruned_scores.npy", "pool.npz", "pruned.npz",
        "pruned_kept.npy", "pruned_scores.npy",
    ]  # fmt: skip
    # 10,000 more images are 31 MB of uint8 and 123 MB as float32; a streamed
    # run holds chunks of 1,000 whatever the pool size. Measured: +1 MB.
    assert large - small < 31e6 / 4, (small, large)


def test_score_resumes_from_its_checkpoint_dir(flat, tmp_path, monkeypatch, capsys):
    """An interrupted `score --checkpoint-dir` run, run again, resumes and
    writes the scores of an uninterrupted run."""
    from advprune.training._checkpoint import _Checkpoint

    root, _, _ = flat
    monkeypatch.chdir(tmp_path)
    argv = ["score", str(root / "X.npy"), str(root / "y.npy"), "--out-dir", "run",
            "--subset-size", "0.5", "--importance", "frequency",
            "--extrapolation", "knn", "--epochs", "3",
            "--attack-steps", "1", "--eps", "0.05", "--batch-size", "32",
            "--device", "cpu", "--quiet",
            "--checkpoint-dir", "checkpoints"]  # fmt: skip
    save = _Checkpoint.save

    def save_then_interrupt(self, trainer, *args):
        save(self, trainer, *args)
        if trainer.epoch_ == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(_Checkpoint, "save", save_then_interrupt)
    assert main(argv) == 130
    assert capsys.readouterr().err == "advprune: interrupted\n"
    assert not (tmp_path / "run").exists()
    monkeypatch.setattr(_Checkpoint, "save", save)
    assert main(argv) == 0
    np.testing.assert_array_equal(
        load(tmp_path / "run" / "all_scores.npy"), load(root / "run" / "all_scores.npy")
    )
