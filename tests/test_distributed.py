"""Chunked embedding and extrapolation spread over joblib workers and a real
Dask cluster on loopback give the scores of the local run."""

import numpy as np
import pytest
from joblib import parallel_config

from advprune import AdversarialPruner

distributed = pytest.importorskip("distributed")


def data():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(600, 8)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 1).astype(int)
    return X, y


def pruner(**kwargs):
    return AdversarialPruner(
        prune_ratio=0.5,
        subset_size=0.2,
        epochs=3,
        eps=0.05,
        attack_steps=2,
        importance="mean_loss",
        extrapolation="knn",
        chunk_size=100,
        device="cpu",
        random_state=0,
        **kwargs,
    )


@pytest.fixture(scope="module")
def local():
    X, y = data()
    return pruner().fit(X, y)


def test_joblib_processes_match_local_run(local):
    X, y = data()
    parallel = pruner(n_jobs=2).fit(X, y)
    np.testing.assert_array_equal(parallel.scores_, local.scores_)
    np.testing.assert_array_equal(parallel.support_, local.support_)


def test_dask_cluster_matches_local_run(local):
    X, y = data()
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
        parallel_config(backend="dask"),
        distributed.get_task_stream(client) as tasks,
    ):
        remote = pruner().fit(X, y)
        workers = set(client.scheduler_info()["workers"])
    # 480 unscored rows in chunks of 100: five chunks ran on the workers.
    assert len(tasks.data) >= 5
    assert {task["worker"] for task in tasks.data} <= workers
    np.testing.assert_array_equal(remote.scores_, local.scores_)
    np.testing.assert_array_equal(remote.support_, local.support_)
    np.testing.assert_array_equal(
        remote.score_samples(X[:50]), local.score_samples(X[:50])
    )
