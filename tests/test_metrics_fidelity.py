import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils.validation import check_is_fitted

from advprune.extrapolation import ImportanceExtrapolator
from advprune.metrics import (
    extrapolation_report,
    lowest_fraction_overlap,
    spearman_score,
    spearman_scorer,
)


def test_spearman_hand_worked():
    # ranks differ by 1 at two positions: rho = 1 - 6 * 2 / (4 * (16 - 1)) = 0.8
    assert spearman_score([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)
    assert spearman_score([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties take their mean rank: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4)
    expected = np.corrcoef([1, 2.5, 2.5, 4], [1, 2, 3, 4])[0, 1]
    assert spearman_score([0, 5, 5, 9], [1, 2, 3, 4]) == pytest.approx(expected)


def test_spearman_of_constant_input_is_nan():
    assert np.isnan(spearman_score([1, 2, 3], [5, 5, 5]))
    assert np.isnan(spearman_score([2, 2, 2], [1, 2, 3]))


def test_lowest_fraction_overlap_hand_worked():
    y_true = [0.1, 0.2, 0.3, 0.4, 0.5]
    # floor(0.4 * 5) = 2 lowest: {0, 1} for the truth, {0, 2} for the predictions
    assert lowest_fraction_overlap(y_true, [1, 3, 2, 4, 5], fraction=0.4) == 0.5
    assert lowest_fraction_overlap(y_true, [5, 4, 3, 2, 1], fraction=0.4) == 0.0
    # ties broken by position, as a stable pruning rule would
    assert lowest_fraction_overlap(y_true, [0, 0, 0, 0, 0], fraction=0.4) == 1.0
    assert lowest_fraction_overlap(y_true[::-1], [0, 0, 0, 0, 0], fraction=0.4) == 0


def test_lowest_fraction_overlap_bad_input():
    with pytest.raises(ValueError, match="'fraction' parameter"):
        lowest_fraction_overlap([1, 2, 3], [1, 2, 3], fraction=1.0)
    with pytest.raises(ValueError, match="selects no sample"):
        lowest_fraction_overlap([1, 2, 3], [1, 2, 3], fraction=0.2)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        lowest_fraction_overlap([1, 2, 3], [1, 2], fraction=0.5)
    with pytest.raises(ValueError, match="y_pred must be 1-D"):
        lowest_fraction_overlap([1, 2], [[1, 2], [3, 4]])


def _smooth_scores(n, noise, seed=0):
    rng = np.random.default_rng(seed)
    E = rng.normal(size=(n, 4))
    return E, E[:, 0] + noise * rng.normal(size=n)


def test_report_is_cross_val_predict_on_the_scored_subset():
    E, s = _smooth_scores(500, 0.5)
    ext = ImportanceExtrapolator()
    report = extrapolation_report(ext, E, s, cv=4, prune_fraction=0.3, random_state=3)
    expected = cross_val_predict(
        ImportanceExtrapolator(), E, s, cv=KFold(4, shuffle=True, random_state=3)
    )
    np.testing.assert_array_equal(report.predictions, expected)
    assert report.spearman == pytest.approx(spearman_score(s, expected))
    assert report.pearson == pytest.approx(np.corrcoef(s, expected)[0, 1])
    assert report.lowest_overlap == lowest_fraction_overlap(s, expected, 0.3)
    assert report.lowest_overlap_chance == 150 / 500
    assert report.n_scored == 500
    with pytest.raises(NotFittedError):
        check_is_fitted(ext)


def test_report_separates_informative_from_random_scores():
    E, s = _smooth_scores(1000, 0.3)
    good = extrapolation_report(ImportanceExtrapolator(), E, s, random_state=0)
    assert good.spearman > 0.8
    assert good.lowest_overlap > 0.8
    shuffled = np.random.default_rng(1).permutation(s)
    bad = extrapolation_report(ImportanceExtrapolator(), E, shuffled, random_state=0)
    assert abs(bad.spearman) < 0.1
    assert abs(bad.lowest_overlap - bad.lowest_overlap_chance) < 0.1


def test_report_with_a_splitter_object():
    E, s = _smooth_scores(300, 0.3)
    report = extrapolation_report(ImportanceExtrapolator(), E, s, cv=KFold(3))
    expected = cross_val_predict(ImportanceExtrapolator(), E, s, cv=KFold(3))
    np.testing.assert_array_equal(report.predictions, expected)


def test_grid_search_chooses_n_neighbors_on_the_scored_subset():
    # Noisy scores reward averaging many neighbours; a noise-free, rapidly varying
    # score rewards the single nearest one. The scorer must tell them apart.
    rng = np.random.default_rng(0)
    E = rng.uniform(-1, 1, size=(1500, 2))
    grid = {"n_neighbors": [1, 12, 96]}

    def best_k(scores):
        search = GridSearchCV(
            ImportanceExtrapolator(), grid, scoring=spearman_scorer, cv=3
        ).fit(E, scores)
        return search.best_params_["n_neighbors"]

    assert best_k(E[:, 0] + 1.0 * rng.normal(size=1500)) > 1
    assert best_k(np.sin(12 * E[:, 0]) * np.cos(12 * E[:, 1])) == 1


def test_report_bad_input():
    E, s = _smooth_scores(100, 0.3)
    ext = ImportanceExtrapolator()
    with pytest.raises(TypeError, match="extrapolator must be a regressor"):
        extrapolation_report(KNeighborsClassifier(), E, (s > 0).astype(int))
    with pytest.raises(ValueError, match="'extrapolator' parameter"):
        extrapolation_report("knn", E, s)
    with pytest.raises(ValueError, match="Expected 2D array"):
        extrapolation_report(ext, E[:, 0], s)
    bad = E.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="Input E_scored contains NaN"):
        extrapolation_report(ext, bad, s)
    with pytest.raises(ValueError, match="Input s_scored contains infinity"):
        extrapolation_report(ext, E, np.r_[s[:-1], np.inf])
    with pytest.raises(ValueError, match="E_scored has 100 rows but s_scored has 99"):
        extrapolation_report(ext, E, s[:-1])
    with pytest.raises(ValueError, match="s_scored must be 1-D"):
        extrapolation_report(ext, E, s[:, np.newaxis])
    with pytest.raises(ValueError, match="'cv' parameter"):
        extrapolation_report(ext, E, s, cv=1)
    with pytest.raises(ValueError, match="'prune_fraction' parameter"):
        extrapolation_report(ext, E, s, prune_fraction=0.0)
    with pytest.raises(ValueError, match="cv=200 folds need at least 200"):
        extrapolation_report(ext, E, s, cv=200)
