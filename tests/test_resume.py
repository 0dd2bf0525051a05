"""A scoring run killed with SIGKILL resumes from its checkpoint and ends with
the scores of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from advprune.training._checkpoint import read_checkpoint

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import torch
    from advprune import AdversarialPruner

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(400, 8)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 1).astype(int)
    pruner = AdversarialPruner(
        prune_ratio=0.5, subset_size=0.5, epochs=25, eps=0.05, attack_steps=3,
        batch_size=20, importance="{score}", extrapolation="knn", embedding="raw",
        device="cpu",
        random_state=0, checkpoint_dir=sys.argv[1] if sys.argv[1] != "-" else None,
    )
    pruner.fit(X, y)
    np.save(sys.argv[2], pruner.scores_)
    """
)


def run_script(tmp_path, checkpoint_dir, out, score):
    script = tmp_path / "score.py"
    script.write_text(SCRIPT.replace("{score}", score))
    return subprocess.Popen(
        [sys.executable, str(script), str(checkpoint_dir), str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def epochs_saved(path):
    if not path.exists():
        return 0
    return read_checkpoint(path)["epoch"] + 1


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    # Probability tensors (the scores that need them) resume through the same
    # checkpoint; tests/test_training.py covers them in-process.
    score = "dynamic_uncertainty"
    reference = run_script(tmp_path, "-", tmp_path / "reference.npy", score)
    assert reference.wait(timeout=300) == 0, reference.stderr.read().decode()

    checkpoints = tmp_path / "checkpoints"
    checkpoint = checkpoints / "checkpoint.pt"
    # Kill twice, at random points of the run (within an epoch, or within a
    # save), then let it finish.
    delays = np.random.default_rng(0).uniform(0, 0.2, size=2)
    for kill_after, delay in zip((3, 12), delays, strict=True):
        process = run_script(tmp_path, checkpoints, tmp_path / "resumed.npy", score)
        deadline = time.monotonic() + 300
        # Reading a checkpoint verifies its digest: polled gently, so as not
        # to slow the run it watches.
        while epochs_saved(checkpoint) < kill_after and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(delay)
        assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert not (tmp_path / "resumed.npy").exists()
    saved_before_resume = epochs_saved(checkpoint)
    assert 12 <= saved_before_resume < 25

    process = run_script(tmp_path, checkpoints, tmp_path / "resumed.npy", score)
    assert process.wait(timeout=300) == 0, process.stderr.read().decode()
    np.testing.assert_array_equal(
        np.load(tmp_path / "resumed.npy"), np.load(tmp_path / "reference.npy")
    )
    assert epochs_saved(checkpoint) == 25
    # Temporary files of saves that were killed are gone.
    assert [p.name for p in checkpoints.iterdir()] == ["checkpoint.pt"]
