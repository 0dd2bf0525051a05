"""benchmarks/_stats.py: paired differences, t-intervals and means of trainings."""

import numpy as np
import pytest

from benchmarks._stats import Table, interval, mean_runs


def _run(seed, method, accuracy, rule="lowest", ratio=0.5):
    return {
        "seed": seed,
        "method": method,
        "rule": rule,
        "prune_ratio": ratio,
        "robust_accuracy": accuracy,
    }


def test_paired_differences_on_common_seeds_in_points():
    runs = [_run(0, "a", 0.60), _run(1, "a", 0.50), _run(2, "a", 0.70)]
    runs += [_run(0, "random", 0.55), _run(2, "random", 0.72)]
    runs += [_run(0, "none", 0.58, ratio=0.0)]
    table = Table(runs, "robust_accuracy")
    np.testing.assert_allclose(table.paired("a", "lowest", 0.5, "random"), [5.0, -2.0])
    # "none" is looked up at ratio 0 under the lowest rule, whatever is asked.
    to_none = table.paired("a", "lowest", 0.5, "none", "balanced")
    np.testing.assert_allclose(to_none, [2.0])


def test_interval_is_the_student_t_interval():
    d = np.array([1.0, 2.0, 3.0, 6.0])
    mean, low, high = interval(d)
    # mean 3, sample sd sqrt(14/3), t(0.975, 3) = 3.1824463
    half = 3.1824463 * np.sqrt(14 / 3) / 2
    np.testing.assert_allclose([mean, low, high], [3.0, 3.0 - half, 3.0 + half])
    assert interval(np.array([1.0])) is None


def test_mean_runs_averages_each_pool_and_refuses_a_missing_training():
    first = [_run(0, "a", 0.5), _run(0, "b", 0.2)]
    second = [_run(0, "a", 0.7), _run(0, "b", 0.4)]
    third = [_run(0, "a", 0.0), _run(0, "b", 0.3)]
    means = {
        r["method"]: r["robust_accuracy"] for r in mean_runs([first, second, third])
    }
    assert means == pytest.approx({"a": 0.4, "b": 0.3})
    with pytest.raises(ValueError, match="trained once in every list"):
        mean_runs([first, second[:1]])
    # A pool trained twice in one list does not make up for another list.
    with pytest.raises(ValueError, match="trained once in every list"):
        mean_runs([first + first[:1], second[1:]])
