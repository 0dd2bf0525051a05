"""Data-parallel scoring on torch.distributed: two processes on the CPU (gloo)
record every sample exactly once and end with the scores of one process.

The processes are spawned (torch.multiprocessing), each importing this module
afresh; a fork would inherit the OpenMP state of the test process, which
libgomp does not support.
"""

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing

from advprune import AdversarialPruner
from advprune.models import build_model
from advprune.training import AdversarialTrainer, Callback, EpochRecorder


def _two_process_data():
    rng = np.random.default_rng(0)
    # 301 rows: the last training batch of 45 splits 23 / 22 between the two
    # processes, so the gradient weighting by share is exercised.
    X = rng.uniform(size=(301, 8)).astype(np.float32)
    return X, (X[:, 0] + X[:, 1] > 1).astype(np.int64)


def _data_parallel_runs(spy_class=None):
    """The runs the test compares: an epoch recording with a spy on what this
    process records before the merge, and a whole pruner fit. The MLP has no
    batch norm, so one process and two train the same model up to rounding."""
    X, y = _two_process_data()
    trainer = AdversarialTrainer(
        build_model("mlp", (8,), 2, random_state=0), eps=0.05, attack_steps=2,
        epochs=3, batch_size=64, device="cpu", random_state=0,
    )  # fmt: skip
    recorder = EpochRecorder(np.arange(0, 301, 2), record_probas=True, random_state=1)
    callbacks = [recorder] if spy_class is None else [recorder, spy_class(recorder)]
    trainer.fit(X, y, record=None, callbacks=callbacks)
    pruner = AdversarialPruner(
        prune_ratio=0.5, subset_size=0.3, epochs=4, eps=0.05, attack_steps=2,
        model="mlp", importance_params={"window": 2}, chunk_size=50, device="cpu",
        extrapolation="knn", train_attack_steps=None, min_steps=None,
        random_state=0,
    ).fit(X, y)  # fmt: skip
    # The default strategy tracks the whole pool, each process its share.
    confidence = AdversarialPruner(
        prune_ratio=0.5, subset_size=0.3, epochs=4, eps=0.05, attack_steps=2,
        model="mlp", min_steps=40, device="cpu", random_state=0,
    ).fit(X, y)  # fmt: skip
    return recorder, callbacks[-1], pruner, confidence


class _WrittenBeforeMerge(Callback):
    """Which recorded entries this process wrote in each epoch, read after the
    recorder's on_epoch_end and before the trainer merges the processes."""

    def __init__(self, recorder):
        self.recorder, self.written = recorder, []

    def on_epoch_end(self, trainer, epoch=None, **kwargs):
        series = self.recorder.series_["adversarial"][epoch]
        self.written.append(~np.isnan(series))


def _data_parallel_worker(rank, world_size, init_file, out):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        recorder, spy, pruner, confidence = _data_parallel_runs(_WrittenBeforeMerge)
        recording = recorder.dynamics()
        np.savez(
            f"{out}{rank}.npz",
            written=np.array(spy.written),
            adversarial=recording.adversarial,
            clean=recording.clean,
            probas=recording.adversarial_probas,
            scores=pruner.scores_,
            support=pruner.support_,
            dynamics=pruner.dynamics_.adversarial,
            tracked=confidence.tracking_.clean,
            attacked=confidence.tracking_.adversarial,
            confidence=confidence.scores_,
        )
    finally:
        dist.destroy_process_group()


def test_two_processes_on_gloo_record_every_sample_once_and_match_one(tmp_path):
    torch.multiprocessing.spawn(
        _data_parallel_worker,
        args=(2, tmp_path / "init", tmp_path / "rank"),
        nprocs=2,
    )
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    # Before the merge: the two processes recorded disjoint halves, together
    # every recorded sample, in every epoch.
    first, second = ranks[0]["written"], ranks[1]["written"]
    assert first.shape == (3, 151)
    assert not (first & second).any() and (first | second).all()
    assert abs(int(first[0].sum()) - int(second[0].sum())) <= 1
    # After it: both hold the same, complete recording and the same scores.
    keys = ("adversarial", "clean", "probas", "scores", "support", "dynamics")
    for key in (*keys, "tracked", "attacked", "confidence"):
        np.testing.assert_array_equal(ranks[0][key], ranks[1][key], err_msg=key)
    assert not np.isnan(ranks[0]["probas"]).any()
    assert not np.isnan(ranks[0]["tracked"]).any()
    assert not np.isnan(ranks[0]["attacked"]).any()

    # One process: the same recording and scores up to float rounding (the
    # gradient is summed in another order); the kept set is the same here.
    recorder, _, pruner, confidence = _data_parallel_runs()
    recording = recorder.dynamics()
    np.testing.assert_allclose(
        ranks[0]["adversarial"], recording.adversarial, atol=1e-6
    )
    np.testing.assert_allclose(ranks[0]["clean"], recording.clean, atol=1e-6)
    np.testing.assert_allclose(
        ranks[0]["dynamics"], pruner.dynamics_.adversarial, atol=1e-6
    )
    np.testing.assert_allclose(ranks[0]["scores"], pruner.scores_, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(ranks[0]["support"], pruner.support_)
    np.testing.assert_allclose(
        ranks[0]["tracked"], confidence.tracking_.clean, atol=1e-6
    )
    np.testing.assert_allclose(
        ranks[0]["attacked"], confidence.tracking_.adversarial, atol=1e-6
    )
