"""Tests for advprune.selection: keep-masks from importance scores."""

import ast
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advprune.selection import coverage_centric, n_pruned, select, select_lowest

RULES = [select_lowest, coverage_centric]
RATIOS = [0.0, 0.1, 0.25, 1 / 3, 0.5, 0.8, 0.99]


def _imbalanced(seed=0):
    """Scores and shuffled labels with class sizes 3, 10 and 50."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat([0, 1, 2], [3, 10, 50]))
    scores = rng.normal(size=y.size)
    return scores, y


def _call(rule, scores, prune_ratio, **kwargs):
    if rule is coverage_centric:
        kwargs.setdefault("random_state", 0)
    return rule(scores, prune_ratio, **kwargs)


# --- n_pruned ---------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 7, 10, 63, 1000])
@pytest.mark.parametrize("ratio", RATIOS)
def test_n_pruned_is_floor_of_product(n, ratio):
    assert n_pruned(n, ratio) == math.floor(ratio * n)


def test_n_pruned_hand_worked():
    assert n_pruned(10, 0.5) == 5
    assert n_pruned(7, 0.5) == 3
    assert n_pruned(3, 0.9) == 2
    assert n_pruned(50, 0.25) == 12


@pytest.mark.parametrize("n_samples", [-1, 2.0, True, "3"])
def test_n_pruned_rejects_bad_counts(n_samples):
    with pytest.raises((TypeError, ValueError), match="n_samples"):
        n_pruned(n_samples, 0.5)


# --- select_lowest: hand-worked results ---------------------------------------


def test_select_lowest_hand_worked():
    scores = np.array([0.9, 0.1, 0.5, 0.3, 0.7])
    np.testing.assert_array_equal(
        select_lowest(scores, 0.4), [True, False, True, False, True]
    )
    np.testing.assert_array_equal(
        select_lowest(scores, 0.6), [True, False, False, False, True]
    )


def test_select_lowest_class_balanced_hand_worked():
    y = np.array([1, 0, 1, 0, 1, 1, 0])
    scores = np.array([0.5, 9.0, 0.1, 1.0, 0.4, 0.2, 5.0])
    # Class 0 (indices 1, 3, 6): floor(0.5 * 3) = 1 removed, the lowest (3).
    # Class 1 (indices 0, 2, 4, 5): 2 removed, the lowest (2, then 5).
    expected = [True, True, False, False, True, False, True]
    np.testing.assert_array_equal(
        select_lowest(scores, 0.5, y=y, class_balanced=True), expected
    )
    # Globally the three lowest (2, 5, 4) go instead.
    np.testing.assert_array_equal(
        select_lowest(scores, 0.5), [True, True, False, True, False, False, True]
    )


def test_select_lowest_keeps_the_highest_scores():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=200)
    keep = select_lowest(scores, 0.3)
    assert scores[keep].min() > scores[~keep].max()


def test_select_lowest_class_balanced_keeps_highest_within_each_class():
    scores, y = _imbalanced()
    keep = select_lowest(scores, 0.5, y=y, class_balanced=True)
    for c in np.unique(y):
        in_class = y == c
        assert scores[keep & in_class].min() > scores[~keep & in_class].max()


# --- exact counts (both rules) ------------------------------------------------


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("n", [0, 1, 7, 10, 101])
@pytest.mark.parametrize("ratio", RATIOS)
def test_exact_global_count(rule, n, ratio):
    scores = np.random.default_rng(n).normal(size=n)
    keep = _call(rule, scores, ratio)
    assert keep.dtype == bool
    assert keep.shape == (n,)
    assert keep.sum() == n - math.floor(ratio * n)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("ratio", RATIOS)
def test_exact_count_per_class_on_imbalanced_labels(rule, ratio):
    scores, y = _imbalanced()
    keep = _call(rule, scores, ratio, y=y, class_balanced=True)
    for c, n_c in zip([0, 1, 2], [3, 10, 50], strict=True):
        assert keep[y == c].sum() == n_c - math.floor(ratio * n_c)


def test_class_balanced_differs_from_global_on_imbalanced_labels():
    # Class 0 holds all the high scores: the global rule keeps all of it, the
    # class-balanced one exactly its share.
    y = np.repeat([0, 1], [50, 50])
    scores = np.where(y == 0, 10.0, 0.0) + np.linspace(0, 1, 100)
    assert select_lowest(scores, 0.5)[y == 0].sum() == 50
    balanced = select_lowest(scores, 0.5, y=y, class_balanced=True)
    assert balanced[y == 0].sum() == 25
    assert balanced[y == 1].sum() == 25


@settings(max_examples=60, deadline=None)
@given(
    n_per_class=st.lists(st.integers(0, 40), min_size=1, max_size=5),
    ratio=st.floats(0.0, 0.999),
    hard_cutoff=st.floats(0.0, 0.999),
    n_bins=st.integers(1, 60),
    seed=st.integers(0, 2**16),
)
def test_counts_property(n_per_class, ratio, hard_cutoff, n_bins, seed):
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(len(n_per_class)), n_per_class))
    # Rounded scores create many ties and empty strata.
    scores = np.round(rng.normal(size=y.size), 1)
    n = y.size
    assert select_lowest(scores, ratio).sum() == n - math.floor(ratio * n)
    keep = coverage_centric(
        scores, ratio, hard_cutoff=hard_cutoff, n_bins=n_bins, random_state=seed
    )
    assert keep.sum() == n - math.floor(ratio * n)
    for rule_kwargs in [{}, {"hard_cutoff": hard_cutoff, "n_bins": n_bins}]:
        rule = coverage_centric if rule_kwargs else select_lowest
        keep = _call(rule, scores, ratio, y=y, class_balanced=True, **rule_kwargs)
        for c, n_c in enumerate(n_per_class):
            assert keep[y == c].sum() == n_c - math.floor(ratio * n_c)


# --- sort direction -----------------------------------------------------------


def test_select_lowest_direction_planted_samples():
    scores, y = _imbalanced()
    scores = scores.copy()
    scores[5] = 100.0
    scores[17] = -100.0
    for kwargs in [{}, {"y": y, "class_balanced": True}]:
        keep = select_lowest(scores, 0.5, **kwargs)
        assert keep[5]
        assert not keep[17]


def test_coverage_centric_direction_planted_samples():
    # The cutoff removes from the HIGH end (hardest first), while the lowest
    # region still keeps samples: a planted low outlier forms a stratum of
    # its own and is kept whole, a planted high one is cut as "hard".
    rng = np.random.default_rng(3)
    scores = rng.uniform(0.0, 1.0, size=200)
    scores[7] = 50.0
    scores[11] = -50.0
    keep = coverage_centric(scores, 0.5, hard_cutoff=0.01, random_state=0)
    assert not keep[7]
    assert keep[11]
    # Without a cutoff the high outlier is a stratum of its own and kept too.
    keep = coverage_centric(scores, 0.5, hard_cutoff=0.0, random_state=0)
    assert keep[7]
    assert keep[11]


def test_coverage_centric_removes_hardest_first():
    rng = np.random.default_rng(4)
    scores = rng.permutation(np.arange(100.0))
    keep = coverage_centric(scores, 0.5, hard_cutoff=0.1, random_state=0)
    assert not keep[scores >= 90].any()
    # The remaining 90 scores fill 50 strata of width 1.78 with one or two
    # samples each; a budget of 50 keeps exactly one per stratum.
    strata = np.minimum((scores[keep] / (89 / 50)).astype(int), 49)
    np.testing.assert_array_equal(np.sort(strata), np.arange(50))


def test_hard_cutoff_is_capped_by_the_prune_count():
    scores = np.arange(20.0)
    # floor(0.5 * 20) = 10 hard samples, but only floor(0.2 * 20) = 4 may go:
    # exactly the four highest are removed and everything else kept.
    keep = coverage_centric(scores, 0.2, hard_cutoff=0.5, random_state=0)
    np.testing.assert_array_equal(keep, scores < 16)


def test_coverage_centric_keeps_low_scores_that_select_lowest_drops():
    scores = np.arange(1000.0)
    lowest = select_lowest(scores, 0.8)
    assert not lowest[scores < 800].any()
    keep = coverage_centric(scores, 0.8, hard_cutoff=0.1, random_state=0)
    assert keep.sum() == 200
    # Uniform scores, 900 after the cutoff, 50 strata of 18: four kept per
    # stratum, so the lowest decile keeps about a tenth of the budget.
    assert keep[scores < 90].sum() == 20
    assert not keep[scores >= 900].any()


def test_coverage_centric_allocation_hand_worked():
    # Four strata of width 1 over [0, 4] with sizes 1, 2, 10, 20 and a budget
    # of 33 - floor(0.61 * 33) = 13. Smallest first: 13 // 4 = 3 -> take all 1;
    # 12 // 3 = 4 -> take all 2; 10 // 2 = 5 -> 5 of 10; the rest, 5 of 20.
    scores = np.concatenate(
        [[0.0], [1.1, 1.2], np.full(10, 2.5), np.linspace(3.0, 4.0, 20)]
    )
    stratum = np.repeat([0, 1, 2, 3], [1, 2, 10, 20])
    for seed in range(5):
        keep = coverage_centric(
            scores, 0.61, hard_cutoff=0.0, n_bins=4, random_state=seed
        )
        counts = np.bincount(stratum[keep], minlength=4)
        np.testing.assert_array_equal(counts, [1, 2, 5, 5])


def test_coverage_centric_samples_uniformly_inside_strata():
    # One stratum (all scores equal): every sample is kept with probability
    # 1/2; over 400 seeds each index is kept close to 200 times.
    scores = np.zeros(10)
    hits = np.zeros(10)
    for seed in range(400):
        hits += coverage_centric(scores, 0.5, hard_cutoff=0.0, random_state=seed)
    assert np.all(np.abs(hits - 200) < 45)


# --- ties ---------------------------------------------------------------------


def test_select_lowest_ties_remove_smaller_index_first():
    scores = np.ones(10)
    np.testing.assert_array_equal(select_lowest(scores, 0.3), np.arange(10) >= 3)
    scores = np.array([2.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    # 0.0 first, then the ties at 1.0 in index order: 1, then 2.
    np.testing.assert_array_equal(
        select_lowest(scores, 0.5), [True, False, False, False, True, True]
    )


def test_select_lowest_ties_within_classes():
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    scores = np.zeros(8)
    keep = select_lowest(scores, 0.5, y=y, class_balanced=True)
    np.testing.assert_array_equal(keep, [False, False, False, False] + [True] * 4)


def test_coverage_centric_ties_cut_larger_index_first():
    scores = np.ones(10)
    keep = coverage_centric(scores, 0.5, hard_cutoff=0.2, random_state=0)
    assert not keep[8] and not keep[9]
    assert keep.sum() == 5


def test_select_lowest_ignores_equal_score_float_types():
    scores = np.array([3, 1, 2, 1], dtype=np.int64)
    np.testing.assert_array_equal(
        select_lowest(scores, 0.5), [True, False, True, False]
    )
    np.testing.assert_array_equal(
        select_lowest(scores.astype(np.float16), 0.5), [True, False, True, False]
    )


# --- prune_ratio 0 ------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("class_balanced", [False, True])
def test_zero_ratio_keeps_all(rule, class_balanced):
    scores, y = _imbalanced()
    keep = _call(rule, scores, 0.0, y=y, class_balanced=class_balanced)
    assert keep.all()


# --- reproducibility ----------------------------------------------------------


def test_coverage_centric_reproducible():
    scores, y = _imbalanced()
    for kwargs in [{}, {"y": y, "class_balanced": True}]:
        a = coverage_centric(scores, 0.6, random_state=42, **kwargs)
        b = coverage_centric(scores, 0.6, random_state=42, **kwargs)
        c = coverage_centric(scores, 0.6, random_state=43, **kwargs)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    rs_a = coverage_centric(scores, 0.6, random_state=np.random.RandomState(7))
    rs_b = coverage_centric(scores, 0.6, random_state=np.random.RandomState(7))
    np.testing.assert_array_equal(rs_a, rs_b)


def test_select_lowest_deterministic():
    scores, y = _imbalanced()
    np.testing.assert_array_equal(
        select_lowest(scores, 0.4), select_lowest(scores, 0.4)
    )


# --- inputs are never modified -------------------------------------------------


@pytest.mark.parametrize("rule", RULES)
def test_read_only_inputs_unmodified(rule):
    scores, y = _imbalanced()
    scores_ro, y_ro = scores.copy(), y.copy()
    scores_ro.flags.writeable = False
    y_ro.flags.writeable = False
    keep = _call(rule, scores_ro, 0.5, y=y_ro, class_balanced=True)
    assert keep.sum() == 2 + 5 + 25
    np.testing.assert_array_equal(scores_ro, scores)
    np.testing.assert_array_equal(y_ro, y)


@pytest.mark.parametrize("rule", RULES)
def test_read_only_memmap_inputs(rule, tmp_path):
    scores, y = _imbalanced()
    np.save(tmp_path / "s.npy", scores.astype(np.float16))
    np.save(tmp_path / "y.npy", y)
    s_map = np.load(tmp_path / "s.npy", mmap_mode="r")
    y_map = np.load(tmp_path / "y.npy", mmap_mode="r")
    keep = _call(rule, s_map, 0.5, y=y_map, class_balanced=True)
    expected = _call(rule, scores.astype(np.float16), 0.5, y=y, class_balanced=True)
    np.testing.assert_array_equal(keep, expected)
    np.testing.assert_array_equal(
        np.load(tmp_path / "s.npy"), scores.astype(np.float16)
    )


def test_lists_accepted():
    np.testing.assert_array_equal(select_lowest([3, 1, 2], 0.34), [True, False, True])


# --- invalid inputs -------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("ratio", [1.0, 1.5, -0.1, float("nan")])
def test_bad_prune_ratio_value(rule, ratio):
    with pytest.raises(ValueError, match="prune_ratio"):
        _call(rule, np.arange(5.0), ratio)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("ratio", ["0.5", None, True, [0.5]])
def test_bad_prune_ratio_type(rule, ratio):
    with pytest.raises(TypeError, match="prune_ratio"):
        _call(rule, np.arange(5.0), ratio)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize(
    "scores, error",
    [
        (np.ones((3, 2)), ValueError),
        (np.float64(1.0), ValueError),
        (np.array([1.0, np.nan, 2.0]), ValueError),
        (np.array([1.0, np.inf]), ValueError),
        (np.array(["a", "b"]), TypeError),
        (np.array([1 + 1j, 2]), TypeError),
    ],
)
def test_bad_scores(rule, scores, error):
    with pytest.raises(error, match="scores"):
        _call(rule, scores, 0.5)


@pytest.mark.parametrize("rule", RULES)
def test_bad_labels(rule):
    scores = np.arange(6.0)
    with pytest.raises(ValueError, match="y is required"):
        _call(rule, scores, 0.5, class_balanced=True)
    with pytest.raises(ValueError, match="y"):
        _call(rule, scores, 0.5, y=np.zeros(5, int), class_balanced=True)
    with pytest.raises(ValueError, match="y"):
        _call(rule, scores, 0.5, y=np.zeros((6, 1), int))
    with pytest.raises(ValueError, match="y"):
        _call(rule, scores, 0.5, y=np.full(6, 0.5), class_balanced=True)
    with pytest.raises(TypeError, match="y"):
        _call(rule, scores, 0.5, y=np.array([1j] * 6), class_balanced=True)
    with pytest.raises(TypeError, match="class_balanced"):
        _call(rule, scores, 0.5, y=np.zeros(6, int), class_balanced="yes")


def test_integral_float_labels_accepted():
    scores = np.arange(4.0)
    keep = select_lowest(
        scores, 0.5, y=np.array([0.0, 1.0, 0.0, 1.0]), class_balanced=True
    )
    np.testing.assert_array_equal(keep, [False, False, True, True])


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"hard_cutoff": 1.0}, ValueError, "hard_cutoff"),
        ({"hard_cutoff": -0.5}, ValueError, "hard_cutoff"),
        ({"hard_cutoff": "0.1"}, TypeError, "hard_cutoff"),
        ({"n_bins": 0}, ValueError, "n_bins"),
        ({"n_bins": 2.5}, TypeError, "n_bins"),
        ({"n_bins": True}, TypeError, "n_bins"),
    ],
)
def test_coverage_centric_bad_parameters(kwargs, error, name):
    with pytest.raises(error, match=name):
        coverage_centric(np.arange(5.0), 0.5, **kwargs)


def test_extreme_score_range():
    scores = np.array([-1e308, 0.0, 1e308, 5.0])
    keep = coverage_centric(scores, 0.5, hard_cutoff=0.0, n_bins=2, random_state=0)
    # Two strata, [-1e308] and the rest: one kept from each. A naive span
    # (max - min) would overflow to inf and put every sample in stratum 0.
    assert keep.sum() == 2
    assert keep[0]


# --- module contract ------------------------------------------------------------


def test_selection_imports_no_torch():
    import advprune.selection as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= {"math", "numbers", "numpy", "sklearn"}


@pytest.mark.parametrize("rule", RULES)
def test_string_labels_balance_like_their_codes(rule):
    rng = np.random.default_rng(0)
    scores = rng.random(30)
    codes = rng.integers(0, 3, 30)
    names = np.array(["cat", "dog", "eel"])[codes]
    by_name = _call(rule, scores, 0.5, y=names, class_balanced=True)
    by_code = _call(rule, scores, 0.5, y=codes, class_balanced=True)
    np.testing.assert_array_equal(by_name, by_code)


@pytest.mark.parametrize("rule", ["lowest", "stratified"])
def test_select_dispatches_by_name(rule):
    scores = np.random.default_rng(1).random(40)
    y = np.repeat([0, 1], 20)
    expected = (
        select_lowest(scores, 0.3, y=y, class_balanced=True)
        if rule == "lowest"
        else coverage_centric(scores, 0.3, y=y, class_balanced=True, random_state=0)
    )
    got = select(scores, 0.3, rule=rule, y=y, class_balanced=True, random_state=0)
    np.testing.assert_array_equal(got, expected)


def test_select_refuses_unknown_rule():
    with pytest.raises(ValueError, match="rule"):
        select([0.1, 0.2], 0.5, rule="highest")
