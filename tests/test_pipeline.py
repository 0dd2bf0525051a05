"""Tests of advprune.pipeline: resamplers act at fit time only."""

import math

import numpy as np
import pytest
import sklearn.pipeline
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_consistent_length
from sklearn.utils.estimator_checks import parametrize_with_checks

from advprune import AdversarialClassifier, AdversarialPruner, make_pipeline
from advprune.metrics import make_robust_scorer
from advprune.pipeline import Pipeline

# Calls of DropLowest.fit_resample in this process, to see cache hits.
FIT_RESAMPLE_CALLS = []


class DropLowest(BaseEstimator):
    """Stand-in pruner: removes the ``floor(ratio * n)`` rows with the lowest
    first feature. Like AdversarialPruner it has ``fit_transform`` (X only);
    unlike it, a ``transform`` that must never run at predict time."""

    def __init__(self, ratio=0.5):
        self.ratio = ratio

    def fit(self, X, y, flag=None):
        X = np.asarray(X)
        order = np.argsort(X[:, 0], kind="stable")
        self.support_ = np.ones(len(X), dtype=bool)
        self.support_[order[: math.floor(self.ratio * len(X))]] = False
        self.flag_ = flag
        return self

    def fit_resample(self, X, y, flag=None):
        FIT_RESAMPLE_CALLS.append(len(X))
        self.fit(X, y, flag=flag)
        return np.asarray(X)[self.support_], np.asarray(y)[self.support_]

    def fit_transform(self, X, y):
        return np.asarray(X)[self.fit(X, y).support_]

    def transform(self, X):
        raise AssertionError("a resampler must not transform at predict time")


class RowCounter(ClassifierMixin, BaseEstimator):
    """Predicts the majority class; records the rows it is fitted on and the
    rows each prediction sees."""

    def fit(self, X, y):
        X, y = np.asarray(X), np.asarray(y)
        check_consistent_length(X, y)
        self.n_fit_ = len(X)
        self.X_fit_ = X.copy()
        self.classes_, counts = np.unique(y, return_counts=True)
        self.majority_ = self.classes_[np.argmax(counts)]
        self.n_predicted_ = []
        return self

    def predict(self, X):
        self.n_predicted_.append(len(X))
        return np.full(len(X), self.majority_)

    def fit_predict(self, X, y):
        return self.fit(X, y).predict(X)


class Doubler(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        self.fitted_ = True
        return self

    def transform(self, X):
        return 2 * np.asarray(X)


def _data(n=90, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, 3))
    y = np.arange(n) % 3
    return X, y


# Without resamplers the pipeline must behave as scikit-learn's: the same
# estimator checks pass, and the same two fail for the same reason.
@parametrize_with_checks(
    [make_pipeline(StandardScaler(), LogisticRegression())],
    expected_failed_checks=lambda _: {
        name: "Pipeline fits its steps in place, as sklearn.pipeline.Pipeline does"
        for name in (
            "check_estimators_overwrite_params",
            "check_dont_overwrite_parameters",
        )
    },
)
def test_without_resamplers_sklearn_checks_agree(estimator, check):
    check(estimator)


def test_make_pipeline_names_steps_like_sklearn():
    pipe = make_pipeline(DropLowest(), Doubler(), Doubler(), RowCounter())
    assert isinstance(pipe, Pipeline)
    assert [name for name, _ in pipe.steps] == [
        "droplowest",
        "doubler-1",
        "doubler-2",
        "rowcounter",
    ]
    pruning = make_pipeline(AdversarialPruner(), AdversarialClassifier())
    assert list(pruning.named_steps) == ["adversarialpruner", "adversarialclassifier"]
    assert "adversarialpruner__prune_ratio" in pruning.get_params()


def test_resampler_prunes_rows_and_labels_at_fit_time():
    X, y = _data()
    pipe = make_pipeline(DropLowest(ratio=0.4), RowCounter()).fit(X, y)
    counter = pipe[-1]
    kept = pipe[0].support_
    assert counter.n_fit_ == 90 - math.floor(0.4 * 90) == kept.sum()
    np.testing.assert_array_equal(counter.X_fit_, X[kept])
    # The lowest rows by the first feature are the ones removed.
    assert X[~kept, 0].max() < X[kept, 0].min()


def test_resampler_is_skipped_at_predict_and_score_time():
    X, y = _data()
    X_new = _data(n=40, seed=1)[0]
    pipe = make_pipeline(DropLowest(ratio=0.5), Doubler(), RowCounter()).fit(X, y)
    assert pipe.predict(X_new).shape == (40,)
    assert pipe.score(X_new, np.zeros(40, int)) in (0.0, 1.0)
    assert pipe[-1].n_predicted_ == [40, 40]
    # The transformer after the resampler still runs at predict time.
    np.testing.assert_allclose(pipe[:-1].transform(X_new), 2 * X_new)


def test_fit_resample_wins_over_fit_transform():
    # imbalanced-learn would call fit_transform here and keep all labels.
    X, y = _data()
    pipe = make_pipeline(DropLowest(ratio=0.5), RowCounter()).fit(X, y)
    np.testing.assert_array_equal(pipe[-1].X_fit_, X[pipe[0].support_])


def test_sklearn_pipeline_cannot_do_this():
    X, y = _data()
    with pytest.raises(ValueError):
        # fit_transform drops rows of X only; y no longer matches.
        sklearn.pipeline.make_pipeline(DropLowest(), RowCounter()).fit(X, y)

    class ResampleOnly(BaseEstimator):
        def fit_resample(self, X, y):
            return X[::2], y[::2]

    with pytest.raises(TypeError, match="transform"):
        sklearn.pipeline.make_pipeline(ResampleOnly(), RowCounter()).fit(X, y)
    pipe = make_pipeline(ResampleOnly(), RowCounter()).fit(X, y)
    assert pipe[-1].n_fit_ == 45


def test_grid_search_prunes_training_folds_only():
    X, y = _data(n=90)
    seen = []

    def counting_scorer(estimator, X_test, y_test):
        seen.append(
            (estimator[0].ratio, estimator[-1].n_fit_, len(X_test), len(y_test))
        )
        return -estimator[0].ratio  # prefer the smallest ratio

    ratios = [0.2, 0.5, 0.7]
    search = GridSearchCV(
        make_pipeline(DropLowest(), RowCounter()),
        {"droplowest__ratio": ratios},
        cv=StratifiedKFold(3),
        scoring=counting_scorer,
    ).fit(X, y)
    assert len(seen) == 9
    for ratio, n_fit, n_test, n_labels in seen:
        assert n_test == n_labels == 30  # test folds untouched
        assert n_fit == 60 - math.floor(ratio * 60)  # training folds pruned
    assert search.best_params_ == {"droplowest__ratio": 0.2}
    # The refit prunes the whole data set, and predicting sees every row.
    assert search.best_estimator_[-1].n_fit_ == 90 - math.floor(0.2 * 90)
    assert search.predict(X).shape == (90,)


def test_fit_params_are_routed_by_step_name():
    X, y = _data()
    pipe = make_pipeline(DropLowest(), RowCounter())
    pipe.fit(X, y, droplowest__flag="on")
    assert pipe[0].flag_ == "on"
    with pytest.raises(ValueError, match="stepname__parameter"):
        pipe.fit(X, y, flag="on")
    with pytest.raises(ValueError, match="does not accept"):
        pipe.fit(X, y, nostep__flag="on")


def test_invalid_steps_are_rejected():
    X, y = _data()
    with pytest.raises(TypeError, match="intermediate steps"):
        make_pipeline(RowCounter(), RowCounter()).fit(X, y)
    with pytest.raises(TypeError, match="last step"):
        Pipeline([("drop", DropLowest()), ("bad", "not an estimator")]).fit(X, y)
    with pytest.raises(ValueError, match="empty"):
        Pipeline([]).fit(X, y)


def test_passthrough_and_fit_transform_fit_predict_fit_resample():
    X, y = _data()
    pipe = Pipeline(
        [
            ("drop", DropLowest(ratio=0.5)),
            ("skip", "passthrough"),
            ("double", Doubler()),
        ]
    )
    Xt = pipe.fit_transform(X, y)
    np.testing.assert_allclose(Xt, 2 * X[pipe[0].support_])
    np.testing.assert_allclose(pipe.transform(X), 2 * X)

    predictions = make_pipeline(DropLowest(ratio=0.5), RowCounter()).fit_predict(X, y)
    assert predictions.shape == (45,)

    resampling = make_pipeline(Doubler(), DropLowest(ratio=1 / 3))
    X_kept, y_kept = resampling.fit_resample(X, y)
    np.testing.assert_allclose(X_kept, 2 * X[resampling[-1].support_])
    np.testing.assert_array_equal(y_kept, y[resampling[-1].support_])
    assert not hasattr(make_pipeline(Doubler(), RowCounter()), "fit_resample")


def test_memory_caches_fitted_resamplers(tmp_path):
    X, y = _data()
    FIT_RESAMPLE_CALLS.clear()
    step = DropLowest(ratio=0.5)
    first = make_pipeline(step, RowCounter(), memory=str(tmp_path)).fit(X, y)
    second = make_pipeline(step, RowCounter(), memory=str(tmp_path)).fit(X, y)
    assert FIT_RESAMPLE_CALLS == [90]  # the second fit loaded the step
    assert not hasattr(step, "support_")  # with a cache the step is cloned
    np.testing.assert_array_equal(first[0].support_, second[0].support_)
    assert second[-1].n_fit_ == 45


def test_verbose_reports_each_step(capsys):
    X, y = _data()
    make_pipeline(DropLowest(), "passthrough", RowCounter(), verbose=True).fit(X, y)
    out = capsys.readouterr().out
    assert "(step 1 of 3) Processing droplowest" in out
    assert "(step 3 of 3) Processing rowcounter" in out


def test_grid_search_with_adversarial_pruner_and_classifier():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(120, 2)).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(int)
    fit_sizes, test_sizes = [], []
    robust = make_robust_scorer(steps=2, random_state=0)

    def scorer(estimator, X_test, y_test):
        fit_sizes.append(
            (
                estimator[0].prune_ratio,
                estimator[0].support_.size,
                int(estimator[0].support_.sum()),
            )
        )
        test_sizes.append(len(X_test))
        return robust(estimator, X_test, y_test)

    pipe = make_pipeline(
        AdversarialPruner(
            importance="mean_loss",
            extrapolation="knn",
            subset_size=0.5,
            epochs=2,
            eps=0.05,
            embedding="raw",
            device="cpu",
            random_state=0,
        ),
        AdversarialClassifier(eps=0.05, epochs=2, device="cpu", random_state=0),
    )
    search = GridSearchCV(
        pipe, {"adversarialpruner__prune_ratio": [0.25, 0.5]}, cv=3, scoring=scorer
    ).fit(X, y)
    assert test_sizes == [40] * 6
    for ratio, n_train, n_kept in fit_sizes:
        assert n_train == 80
        assert n_kept == 80 - math.floor(ratio * 80)
    assert 0.0 <= search.best_score_ <= 1.0
    assert search.best_estimator_[0].support_.sum() == 120 - math.floor(
        search.best_params_["adversarialpruner__prune_ratio"] * 120
    )
    clean = cross_val_score(pipe, X, y, cv=2)
    assert clean.shape == (2,)


def test_imbalanced_learn_pipeline_names_advprune_make_pipeline():
    imblearn_pipeline = pytest.importorskip("imblearn.pipeline")
    X, y = _data()
    pipe = imblearn_pipeline.make_pipeline(
        AdversarialPruner(epochs=2, device="cpu"),
        AdversarialClassifier(epochs=1, device="cpu"),
    )
    with pytest.raises(TypeError, match=r"advprune\.make_pipeline"):
        pipe.fit(X, y)
