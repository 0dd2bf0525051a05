"""Tests of advprune.scores against values worked out by hand."""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from advprune.scores import (
    SCORES,
    aum,
    dynamic_uncertainty,
    el2n,
    forgetting_events,
    frequency_score,
    mean_loss,
    requires_labels,
    requires_probas,
    tdds,
)

LOG2 = math.log(2.0)
SQRT2 = math.sqrt(2.0)

P_SCORES = ["dynamic_uncertainty", "frequency", "mean_loss"]
LABEL_SCORES = ["forgetting", "el2n", "aum"]


def binary_probas(p_class0):
    """(n_epochs, n_samples, 2) probas from the class-0 probabilities."""
    p = np.asarray(p_class0, dtype=np.float64)
    return np.stack([p, 1.0 - p], axis=-1)


def call(name, P, probas, y):
    """Call a registered score with the inputs the registry says it takes."""
    if requires_labels(name):
        return SCORES[name](probas, y)
    if requires_probas(name):
        return SCORES[name](probas, window=3)
    if name == "dynamic_uncertainty":
        return SCORES[name](P, window=2)
    return SCORES[name](P)


def small_dynamics():
    """4 epochs, 3 samples, 2 classes; probabilities exact in float16."""
    p0 = np.array(
        [
            [0.75, 0.25, 0.5],
            [0.25, 0.75, 0.5],
            [0.75, 0.5, 0.5],
            [0.5, 0.25, 0.75],
        ]
    )
    probas = binary_probas(p0)
    y = np.array([0, 1, 0])
    P = probas[:, np.arange(3), y]
    return P, probas, y


# --------------------------------------------------------------------------
# dynamic_uncertainty


def test_dynamic_uncertainty_hand_values():
    # window 3, one column [0.2, 0.4, 0.6, 0.8]: both windows [0.2, 0.4, 0.6]
    # and [0.4, 0.6, 0.8] have mean +- 0.2 deviations, variance
    # (0.04 + 0 + 0.04) / 2 = 0.04, std 0.2 -> DU 0.2.
    # Column [0.5, 1, 0, 0.5]: windows [0.5, 1, 0] (mean 0.5, var
    # (0.25 + 0.25) / 2 = 0.25, std 0.5) and [1, 0, 0.5] (mean 0.5, var 0.25,
    # std 0.5) -> DU 0.5.
    P = np.array([[0.2, 0.5], [0.4, 1.0], [0.6, 0.0], [0.8, 0.5]])
    assert_allclose(dynamic_uncertainty(P, window=3), [0.2, 0.5], rtol=1e-12)


def test_dynamic_uncertainty_uses_k_minus_j_plus_one_windows():
    # K = 4, J = 2. Column [0, 0, 0, 1]: windows [0,0], [0,0], [0,1] have
    # stds 0, 0, 1/sqrt(2). Our K-J+1 = 3 windows give (1/sqrt(2)) / 3;
    # the authors' code (K-J = 2 windows, last one dropped) would give 0.
    # Column [1, 0, 0, 0]: stds 1/sqrt(2), 0, 0 -> (1/sqrt(2)) / 3 here,
    # (1/sqrt(2)) / 2 with K-J windows.
    P = np.array([[0.0, 1.0], [0.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    expected = 1.0 / SQRT2 / 3.0
    assert_allclose(dynamic_uncertainty(P, window=2), [expected, expected])


def test_dynamic_uncertainty_constant_series_is_zero():
    P = np.full((12, 3), 0.3)
    P[:, 1] = 0.0
    P[:, 2] = 1.0
    assert_allclose(dynamic_uncertainty(P), 0.0, atol=1e-15)


def test_dynamic_uncertainty_oscillating_sample_ranks_first():
    rng = np.random.default_rng(0)
    # Five stable samples drifting slowly upwards, one flipping 0.2 <-> 0.8.
    P = np.linspace(0.6, 0.7, 15)[:, None] + rng.uniform(0, 0.01, (15, 6))
    P[:, 3] = np.where(np.arange(15) % 2 == 0, 0.2, 0.8)
    scores = dynamic_uncertainty(P, window=5)
    assert np.argmax(scores) == 3
    assert scores[3] > 10 * np.delete(scores, 3).max()


@pytest.mark.parametrize("n_epochs", [9, 10])
def test_dynamic_uncertainty_needs_more_than_window_epochs(n_epochs):
    with pytest.raises(ValueError, match="more than window=10 epochs"):
        dynamic_uncertainty(np.full((n_epochs, 2), 0.5))
    assert dynamic_uncertainty(np.full((11, 2), 0.5)).shape == (2,)


@pytest.mark.parametrize(
    ("window", "error"),
    [(1, ValueError), (0, ValueError), (2.0, TypeError), (True, TypeError)],
)
def test_dynamic_uncertainty_bad_window(window, error):
    with pytest.raises(error, match="window"):
        dynamic_uncertainty(np.full((12, 2), 0.5), window=window)


# --------------------------------------------------------------------------
# frequency_score


def test_frequency_score_hand_values():
    # FFT over 4 epochs, F_f = sum_t x_t exp(-2 pi i f t / 4):
    # [1, 0, 1, 0]: F = [2, 1 - 1, 1 + 1, 1 - 1] = [2, 0, 2, 0] -> 2.
    # [0, 0, 1, 1]: F_1 = e^{-i pi} + e^{-3i pi/2} = -1 + i, |F_1| = sqrt 2;
    #   F_2 = e^{-2i pi} + e^{-3i pi} = 1 - 1 = 0;
    #   F_3 = e^{-3i pi} + e^{-9i pi/2} = -1 - i, |F_3| = sqrt 2 -> 2 sqrt 2.
    #   (rfft bins 1..2 would give sqrt 2 only: the full FFT is used.)
    P = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    assert_allclose(frequency_score(P), [2.0, 2.0 * SQRT2], rtol=1e-12)


def test_frequency_score_two_epochs():
    # [0.25, 0.75]: F_1 = 0.25 - 0.75 = -0.5 -> 0.5.
    assert_allclose(frequency_score([[0.25], [0.75]]), [0.5], rtol=1e-12)


def test_frequency_score_constant_series_is_zero():
    P = np.tile([0.0, 0.3, 1.0], (9, 1))
    assert_allclose(frequency_score(P), 0.0, atol=1e-14)


def test_frequency_score_oscillating_sample_ranks_first():
    P = np.tile(np.linspace(0.9, 0.95, 12)[:, None], (1, 5))
    P[:, 2] = np.where(np.arange(12) % 2 == 0, 0.3, 0.7)
    scores = frequency_score(P)
    assert np.argmax(scores) == 2
    assert scores[2] > 2 * np.delete(scores, 2).max()


def test_frequency_score_needs_two_epochs():
    with pytest.raises(ValueError, match="at least 2 epoch"):
        frequency_score(np.full((1, 3), 0.5))


# --------------------------------------------------------------------------
# mean_loss


def test_mean_loss_hand_values():
    # [0.5, 0.25]: -(log 0.5 + log 0.25) / 2 = (log 2 + 2 log 2) / 2 = 1.5 log 2.
    # [1, 1]: 0.  [0.5, 0.5]: log 2.
    P = np.array([[0.5, 1.0, 0.5], [0.25, 1.0, 0.5]])
    assert_allclose(mean_loss(P), [1.5 * LOG2, 0.0, LOG2], rtol=1e-12)


def test_mean_loss_clips_zero_probability():
    # -log(1e-12) = 12 log 10 ~ 27.631; averaged with -log 1 = 0 -> 6 log 10.
    assert_allclose(mean_loss([[0.0], [1.0]]), [6.0 * math.log(10.0)])


# --------------------------------------------------------------------------
# forgetting_events


def test_forgetting_events_hand_values():
    # Correct (C) / wrong (W) per epoch for 5 samples, label 0 throughout:
    #   sample 0: C W C W C -> C->W at 0->1 and 2->3: 2 events
    #   sample 1: W C C W W -> one C->W (2->3): 1 event
    #   sample 2: C C C C C -> 0 events
    #   sample 3: W W W W W -> never learned: n_epochs = 5 ("max") or 0
    #   sample 4: W C W W C -> one C->W (1->2): 1 event (W->C never counts)
    correct = np.array(
        [
            [1, 0, 1, 0, 1],
            [0, 1, 1, 0, 0],
            [1, 1, 1, 1, 1],
            [0, 0, 0, 0, 0],
            [0, 1, 0, 0, 1],
        ],
        dtype=bool,
    ).T
    probas = binary_probas(np.where(correct, 0.75, 0.25))
    y = np.zeros(5, dtype=int)
    assert_array_equal(forgetting_events(probas, y), [2, 1, 0, 5, 1])
    assert_array_equal(
        forgetting_events(probas, y, never_learned="zero"), [2, 1, 0, 0, 1]
    )
    assert forgetting_events(probas, y).dtype == np.float64


def test_forgetting_events_never_learned_outranks_every_count():
    # With 4 epochs at most 2 events fit (C W C W); never learned gets 4.
    correct = np.array([[1, 0, 1, 0], [0, 0, 0, 0]], dtype=bool).T
    probas = binary_probas(np.where(correct, 0.9, 0.1))
    scores = forgetting_events(probas, np.array([0, 0]))
    assert_array_equal(scores, [2, 4])


def test_forgetting_events_ties_go_to_lowest_class():
    # probas (0.5, 0.5) at every epoch: argmax is class 0. Label 0 is always
    # correct, label 1 never (never learned).
    probas = np.full((3, 2, 2), 0.5)
    assert_array_equal(forgetting_events(probas, np.array([0, 1])), [0, 3])


def test_forgetting_events_multiclass_labels():
    # 3 classes, label 2: epochs predict 2, 0, 2 -> one event.
    probas = np.array([[[0.1, 0.2, 0.7]], [[0.6, 0.1, 0.3]], [[0.2, 0.2, 0.6]]])
    assert_array_equal(forgetting_events(probas, np.array([2])), [1])


def test_forgetting_events_bad_never_learned():
    _, probas, y = small_dynamics()
    with pytest.raises(ValueError, match="never_learned"):
        forgetting_events(probas, y, never_learned="inf")


def test_forgetting_events_needs_two_epochs():
    with pytest.raises(ValueError, match="at least 2 epoch"):
        forgetting_events(np.full((1, 2, 2), 0.5), np.array([0, 1]))


# --------------------------------------------------------------------------
# el2n


def test_el2n_hand_values_three_classes():
    # p = (0.2, 0.3, 0.5), y = 2: error (0.2, 0.3, -0.5),
    # norm sqrt(0.04 + 0.09 + 0.25) = sqrt(0.38).
    # p = (0.2, 0.3, 0.5), y = 0: error (-0.8, 0.3, 0.5),
    # norm sqrt(0.64 + 0.09 + 0.25) = sqrt(0.98).
    probas = np.array([[[0.2, 0.3, 0.5], [0.2, 0.3, 0.5]]])
    assert_allclose(el2n(probas, np.array([2, 0])), [math.sqrt(0.38), math.sqrt(0.98)])


def test_el2n_default_uses_first_quarter_of_epochs():
    # 8 epochs -> default averages epochs 0 and 1 (8 // 4 = 2).
    # Sample (y = 0) has p0 = 0.5, 0.75, then 1.0:
    #   epoch 0: ||(0.5, 0.5) - (1, 0)|| = 0.5 sqrt 2
    #   epoch 1: ||(0.75, 0.25) - (1, 0)|| = 0.25 sqrt 2
    #   -> default (0.5 + 0.25) sqrt 2 / 2 = 0.375 sqrt 2;
    #   epochs=1 -> 0.5 sqrt 2; epochs=8 -> 0.75 sqrt 2 / 8.
    probas = binary_probas([[0.5], [0.75]] + 6 * [[1.0]])
    y = np.array([0])
    assert_allclose(el2n(probas, y), [0.375 * SQRT2])
    assert_allclose(el2n(probas, y, epochs=1), [0.5 * SQRT2])
    assert_allclose(el2n(probas, y, epochs=8), [0.75 * SQRT2 / 8])


def test_el2n_default_with_fewer_than_four_epochs_uses_one():
    # 3 epochs: max(1, 3 // 4) = 1 -> epoch 0 only: ||(0.5, 0.5) - (0, 1)||.
    probas = binary_probas([[0.5], [0.0], [0.0]])
    assert_allclose(el2n(probas, np.array([1])), [0.5 * SQRT2])


@pytest.mark.parametrize(
    ("epochs", "error"),
    [(0, ValueError), (5, ValueError), (1.0, TypeError), (True, TypeError)],
)
def test_el2n_bad_epochs(epochs, error):
    _, probas, y = small_dynamics()
    with pytest.raises(error, match="epochs"):
        el2n(probas, y, epochs=epochs)


# --------------------------------------------------------------------------
# aum


def test_aum_hand_values_negated():
    # Epoch 0 p = (0.5, 0.3, 0.2), epoch 1 p = (0.25, 0.25, 0.5).
    # y = 0: margins log(0.5/0.3) = 0.5108, log(0.25/0.5) = -log 2
    #   -> AUM (0.5108 - 0.6931) / 2 = -0.0912 -> score +0.0912.
    # y = 2: margins log(0.2/0.5) = -0.9163, log(0.5/0.25) = log 2
    #   -> AUM (-0.9163 + 0.6931) / 2 = -0.1116 -> score +0.1116.
    probas = np.array([[[0.5, 0.3, 0.2]] * 2, [[0.25, 0.25, 0.5]] * 2])
    expected = [
        -(math.log(0.5 / 0.3) - LOG2) / 2,
        -(math.log(0.2 / 0.5) + LOG2) / 2,
    ]
    assert_allclose(aum(probas, np.array([0, 2])), expected, rtol=1e-12)


def test_aum_equals_negated_mean_logit_margin():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(5, 7, 4))
    probas = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    y = rng.integers(0, 4, size=7)
    true = logits[:, np.arange(7), y]
    others = logits.copy()
    others[:, np.arange(7), y] = -np.inf
    expected = -(true - others.max(axis=2)).mean(axis=0)
    assert_allclose(aum(probas, y), expected, rtol=1e-10)


def test_aum_clips_zero_probabilities():
    # p = (1, 0), y = 0: margin log 1 - log(1e-12) = 12 log 10 -> -12 log 10.
    probas = np.array([[[1.0, 0.0]]])
    assert_allclose(aum(probas, np.array([0])), [-12 * math.log(10.0)])


# --------------------------------------------------------------------------
# tdds


def test_tdds_hand_values_single_window():
    # window 3, 3 epochs: one window (k = 0) with weight decay = 0.9.
    # Sample 0: (0.8, 0.2) -> (0.5, 0.5) -> (0.5, 0.5):
    #   d_0 = 0.5 |log(0.5/0.8)| + 0.5 |log(0.5/0.2)| = 0.5 log(1.6 * 2.5)
    #       = log 2 (the plain KL would be 0.5 log(2.5 / 1.6) = 0.2231),
    #   d_1 = 0; mean log(2)/2; R = sqrt(2 (log(2)/2)^2) = log(2) / sqrt 2.
    #   score = 0.9 log(2) / sqrt 2 = 0.44112.
    # Sample 1 never changes: every d_t = 0 -> 0.
    probas = binary_probas([[0.8, 0.3], [0.5, 0.3], [0.5, 0.3]])
    assert_allclose(tdds(probas, window=3), [0.9 * LOG2 / SQRT2, 0.0], rtol=1e-6)


def test_tdds_weights_latest_window_most():
    # 4 epochs, window 3 -> windows k = 0 (d_0, d_1) and k = 1 (d_1, d_2),
    # weights decay (1 - decay) = 0.09 and decay = 0.9.
    # Sample 0: change at the start, d = (log 2, 0, 0):
    #   R_0 = log(2)/sqrt 2, R_1 = 0 -> 0.09 log(2) / sqrt 2 = 0.044112.
    # Sample 1: change at the end, (0.5, 0.5) -> (0.8, 0.2), d = (0, 0, d_2),
    #   d_2 = 0.8 log(0.8/0.5) + 0.2 |log(0.2/0.5)| = 0.376003 + 0.183258
    #       = 0.559261; R_0 = 0, R_1 = d_2 / sqrt 2 -> 0.9 * 0.395457 = 0.355912.
    d_2 = 0.8 * math.log(1.6) + 0.2 * math.log(2.5)
    probas = binary_probas([[0.8, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.8]])
    expected = [0.09 * LOG2 / SQRT2, 0.9 * d_2 / SQRT2]
    assert_allclose(tdds(probas, window=3), expected, rtol=1e-6)
    # decay = 1 keeps the last window only.
    assert_allclose(tdds(probas, window=3, decay=1.0), [0.0, d_2 / SQRT2], rtol=1e-6)


def test_tdds_deviation_is_unnormalised_norm():
    # window 4 = 4 epochs, (0.8, 0.2) -> (0.5, 0.5) -> (0.5, 0.5) -> (0.8, 0.2):
    # d = (log 2, 0, 0.559261), mean 0.417469, deviations
    # (0.275678, -0.417469, 0.141792), squares sum 0.270384, R = 0.519984
    # (the std would be R / sqrt 3). score = 0.9 R = 0.467986.
    probas = binary_probas([[0.8], [0.5], [0.5], [0.8]])
    d = np.array([LOG2, 0.0, 0.8 * math.log(1.6) + 0.2 * math.log(2.5)])
    expected = 0.9 * math.sqrt(((d - d.mean()) ** 2).sum())
    assert_allclose(expected, 0.467986, rtol=1e-5)
    assert_allclose(tdds(probas, window=4), [expected], rtol=1e-6)


def test_tdds_oscillating_sample_ranks_first():
    rng = np.random.default_rng(1)
    p0 = np.tile(np.linspace(0.8, 0.9, 14)[:, None], (1, 5))
    p0[:, 4] = rng.uniform(0.2, 0.8, size=14)
    scores = tdds(binary_probas(p0), window=5)
    assert np.argmax(scores) == 4


def test_tdds_window_bounds():
    probas = binary_probas(np.full((6, 2), 0.5))
    assert tdds(probas, window=6).shape == (2,)
    with pytest.raises(ValueError, match="at least window=7 epochs"):
        tdds(probas, window=7)
    with pytest.raises(ValueError, match="window"):
        tdds(probas, window=2)
    with pytest.raises(TypeError, match="window"):
        tdds(probas, window=3.0)


@pytest.mark.parametrize(
    ("decay", "error"),
    [(0.0, ValueError), (1.5, ValueError), (-0.1, ValueError), (True, TypeError)],
)
def test_tdds_bad_decay(decay, error):
    probas = binary_probas(np.full((6, 2), 0.5))
    with pytest.raises(error, match="decay"):
        tdds(probas, window=3, decay=decay)


def test_tdds_nan_decay():
    probas = binary_probas(np.full((6, 2), 0.5))
    with pytest.raises(ValueError, match="decay"):
        tdds(probas, window=3, decay=float("nan"))


# --------------------------------------------------------------------------
# registry


def test_registry_names_and_inputs():
    assert set(SCORES) == {
        "dynamic_uncertainty",
        "frequency",
        "forgetting",
        "el2n",
        "aum",
        "tdds",
        "mean_loss",
    }
    assert SCORES["frequency"] is frequency_score
    assert SCORES["forgetting"] is forgetting_events
    assert [requires_probas(n) for n in P_SCORES] == [False] * 3
    assert [requires_probas(n) for n in LABEL_SCORES + ["tdds"]] == [True] * 4
    assert [requires_labels(n) for n in LABEL_SCORES] == [True] * 3
    assert [requires_labels(n) for n in P_SCORES + ["tdds"]] == [False] * 4


@pytest.mark.parametrize("name", ["DU", "frequency_score", "", None])
def test_registry_unknown_name(name):
    with pytest.raises(ValueError, match="Unknown score"):
        requires_probas(name)
    with pytest.raises(ValueError, match="Unknown score"):
        requires_labels(name)


@pytest.mark.parametrize("name", sorted(SCORES))
def test_every_score_returns_float64_per_sample(name):
    P, probas, y = small_dynamics()
    scores = call(name, P, probas, y)
    assert scores.shape == (3,)
    assert scores.dtype == np.float64
    assert np.isfinite(scores).all()


@pytest.mark.parametrize("name", sorted(SCORES))
def test_every_score_is_permutation_equivariant(name):
    P, probas, y = small_dynamics()
    order = np.array([2, 0, 1])
    assert_allclose(
        call(name, P[:, order], probas[:, order], y[order]),
        call(name, P, probas, y)[order],
    )


# --------------------------------------------------------------------------
# inputs: read-only, float16, memmaps, lists


@pytest.mark.parametrize("name", sorted(SCORES))
def test_inputs_read_only_and_unmodified(name):
    P, probas, y = small_dynamics()
    expected = call(name, P.copy(), probas.copy(), y.copy())
    originals = (P.copy(), probas.copy(), y.copy())
    for array in (P, probas, y):
        array.setflags(write=False)
    assert_allclose(call(name, P, probas, y), expected)
    for array, original in zip((P, probas, y), originals, strict=True):
        assert_array_equal(array, original)


@pytest.mark.parametrize("name", sorted(SCORES))
def test_float16_input_matches_float64(name):
    # All probabilities of small_dynamics are exact in float16.
    P, probas, y = small_dynamics()
    expected = call(name, P, probas, y)
    scores = call(name, P.astype(np.float16), probas.astype(np.float16), y)
    assert scores.dtype == np.float64
    assert_allclose(scores, expected, rtol=1e-12)


def test_read_only_float16_memmaps(tmp_path):
    P, probas, y = small_dynamics()
    paths = {"P": tmp_path / "P.dat", "probas": tmp_path / "probas.dat"}
    for key, array in (("P", P), ("probas", probas)):
        out = np.memmap(paths[key], dtype=np.float16, mode="w+", shape=array.shape)
        out[:] = array
        out.flush()
        del out
    P_map = np.memmap(paths["P"], dtype=np.float16, mode="r", shape=P.shape)
    probas_map = np.memmap(
        paths["probas"], dtype=np.float16, mode="r", shape=probas.shape
    )
    for name in SCORES:
        assert_allclose(call(name, P_map, probas_map, y), call(name, P, probas, y))
    assert_array_equal(P_map, P)
    assert_array_equal(probas_map, probas)


def test_lists_accepted():
    P, probas, y = small_dynamics()
    assert_allclose(
        dynamic_uncertainty(P.tolist(), window=2), dynamic_uncertainty(P, window=2)
    )
    assert_allclose(aum(probas.tolist(), y.tolist()), aum(probas, y))


# --------------------------------------------------------------------------
# invalid input


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", sorted(SCORES))
def test_non_finite_input_rejected(name, bad):
    P, probas, y = small_dynamics()
    P[1, 2] = bad
    probas[1, 2, 0] = bad
    param = "probas" if requires_probas(name) else "P"
    with pytest.raises(ValueError, match=rf"{param}.*finite"):
        call(name, P, probas, y)


@pytest.mark.parametrize("bad", [-0.25, 1.5])
@pytest.mark.parametrize("name", sorted(SCORES))
def test_values_outside_unit_interval_rejected(name, bad):
    P, probas, y = small_dynamics()
    P[0, 0] = bad
    probas[0, 0, 1] = bad
    param = "probas" if requires_probas(name) else "P"
    with pytest.raises(ValueError, match=rf"{param}.*\[0, 1\]"):
        call(name, P, probas, y)


@pytest.mark.parametrize("name", sorted(SCORES))
def test_wrong_ndim_rejected(name):
    P, probas, y = small_dynamics()
    if requires_probas(name):
        match = r"probas must be 3-D"
        P, probas = P, probas[..., 0]
    else:
        match = r"P must be 2-D"
        P = P[:, 0]
    with pytest.raises(ValueError, match=match):
        call(name, P, probas, y)


@pytest.mark.parametrize("name", P_SCORES)
def test_probas_given_as_P_rejected(name):
    _, probas, _ = small_dynamics()
    with pytest.raises(ValueError, match="P must be 2-D"):
        SCORES[name](probas)


@pytest.mark.parametrize("name", sorted(SCORES))
@pytest.mark.parametrize("dtype", [complex, bool, object])
def test_non_real_dtype_rejected(name, dtype):
    P, probas, y = small_dynamics()
    param = "probas" if requires_probas(name) else "P"
    with pytest.raises(TypeError, match=param):
        call(name, P.astype(dtype), probas.astype(dtype), y)


@pytest.mark.parametrize("name", LABEL_SCORES)
def test_wrong_y_length_rejected(name):
    _, probas, y = small_dynamics()
    with pytest.raises(ValueError, match=r"y must be of shape \(n_samples,\)"):
        SCORES[name](probas, y[:2])
    with pytest.raises(ValueError, match=r"y must be of shape \(n_samples,\)"):
        SCORES[name](probas, y[:, None])


@pytest.mark.parametrize("name", LABEL_SCORES)
def test_non_integer_y_rejected(name):
    _, probas, y = small_dynamics()
    with pytest.raises(TypeError, match="y must hold integer"):
        SCORES[name](probas, y.astype(float))


@pytest.mark.parametrize("name", LABEL_SCORES)
@pytest.mark.parametrize("label", [-1, 2])
def test_label_out_of_range_rejected(name, label):
    _, probas, y = small_dynamics()
    y[0] = label
    with pytest.raises(ValueError, match=r"y must hold labels in \[0, n_classes\)"):
        SCORES[name](probas, y)


@pytest.mark.parametrize("name", LABEL_SCORES + ["tdds"])
def test_single_class_rejected(name):
    _, probas, y = small_dynamics()
    with pytest.raises(ValueError, match="at least 2 classes"):
        call(name, None, probas[..., :1], y * 0)


@pytest.mark.parametrize("name", sorted(SCORES))
def test_zero_epochs_rejected(name):
    P, probas, y = small_dynamics()
    with pytest.raises(ValueError, match="epoch"):
        call(name, P[:0], probas[:0], y)


@pytest.mark.parametrize("name", sorted(SCORES))
def test_no_samples_gives_empty_scores(name):
    P, probas, y = small_dynamics()
    scores = call(name, P[:, :0], probas[:, :0], y[:0])
    assert scores.shape == (0,)
    assert scores.dtype == np.float64


# --------------------------------------------------------------------------
# sort direction on imbalanced labels: hard samples must score higher


def imbalanced_dynamics(n_epochs=20):
    """Easy samples of two classes (30 and 5) and 5 hard samples (3 classes).

    Easy samples are learned from the start and their true-class probability
    rises smoothly from 0.90 to 0.99. Hard samples oscillate irregularly in
    [0.2, 0.7] and are misclassified whenever p_y < 0.375 (the rest of the
    mass is split 0.6 / 0.4 over the other two classes).
    """
    y = np.array([0] * 30 + [1] * 5 + [0, 0, 2, 2, 2])
    hard = np.zeros(y.size, dtype=bool)
    hard[35:] = True
    t = np.arange(n_epochs)[:, None]
    p_true = np.where(
        hard,
        0.45 + 0.25 * np.sin(1.7 * t + np.arange(y.size)),
        0.90 + 0.09 * t / (n_epochs - 1) + 0.001 * np.arange(y.size) / y.size,
    )
    probas = np.empty((n_epochs, y.size, 3))
    for i, label in enumerate(y):
        others = [c for c in range(3) if c != label]
        probas[:, i, label] = p_true[:, i]
        probas[:, i, others[0]] = 0.6 * (1.0 - p_true[:, i])
        probas[:, i, others[1]] = 0.4 * (1.0 - p_true[:, i])
    return p_true, probas, y, hard


@pytest.mark.parametrize("name", sorted(SCORES))
def test_hard_samples_score_higher_on_imbalanced_labels(name):
    P, probas, y, hard = imbalanced_dynamics()
    if requires_labels(name):
        scores = SCORES[name](probas, y)
    elif requires_probas(name):
        scores = SCORES[name](probas)
    else:
        scores = SCORES[name](P)
    assert scores[hard].min() > scores[~hard].max()
    # The lowest scores, which pruning removes first, are all easy samples.
    assert not hard[np.argsort(scores, kind="stable")[:35]].any()
