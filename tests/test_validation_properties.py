"""Property-based tests of input validation: random shapes, dtypes and values
never fail with anything but the documented ValueError / TypeError."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from advprune import AdversarialPruner, ImportanceExtrapolator
from advprune.scores import SCORES, requires_labels, requires_probas
from advprune.selection import coverage_centric, select_lowest
from advprune.training import AdversarialTrainer

DOCUMENTED = (ValueError, TypeError)
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

dtypes = st.sampled_from(
    [np.float32, np.float64, np.int64, np.uint8, np.bool_, np.complex64, np.str_]
)


@st.composite
def arrays(draw, min_dims=1, max_dims=4, max_side=12):
    dtype = draw(dtypes)
    shape = draw(
        hnp.array_shapes(
            min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=max_side
        )
    )
    if dtype is np.str_:
        return np.full(shape, "a")
    elements = None
    if np.issubdtype(dtype, np.floating):
        elements = st.one_of(
            st.floats(-2, 2, width=32), st.sampled_from([np.nan, np.inf, -np.inf])
        )
    return draw(hnp.arrays(dtype, shape, elements=elements))


numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-5, 50),
    st.none(),
    st.text(max_size=3),
)


class _ValidationPassed(Exception):
    pass


def _stop(*args, **kwargs):
    raise _ValidationPassed


@st.composite
def labelled(draw):
    """X of any shape and dtype; y mostly integer labels of matching length
    (so validation gets past y), sometimes anything."""
    X = draw(st.one_of(arrays(min_dims=2), arrays(min_dims=1)))
    n = X.shape[0]
    matching = hnp.arrays(np.int64, n, elements=st.integers(0, 3))
    alternating = st.just(np.arange(n) % 2)
    return X, draw(st.one_of(alternating, matching, arrays(max_dims=2)))


@SETTINGS
@given(
    data=labelled(),
    ratio=st.one_of(st.floats(0, 0.99), numbers),
    subset=st.one_of(st.floats(0.2, 1), st.integers(1, 12), numbers),
)
def test_pruner_validation_raises_only_documented_errors(data, ratio, subset):
    X, y = data
    pruner = AdversarialPruner(
        prune_ratio=ratio, subset_size=subset, epochs=11, device="cpu"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AdversarialTrainer, "fit", _stop)
        try:
            pruner.fit(X, y)
        except (*DOCUMENTED, _ValidationPassed):
            pass


@SETTINGS
@given(
    scores=arrays(max_dims=2),
    y=arrays(max_dims=2),
    ratio=numbers,
    balanced=st.booleans(),
)
def test_selection_raises_only_documented_errors(scores, y, ratio, balanced):
    for rule in (select_lowest, coverage_centric):
        try:
            keep = rule(scores, ratio, y=y, class_balanced=balanced)
        except DOCUMENTED:
            continue
        assert keep.dtype == bool and keep.shape == (len(scores),)


@SETTINGS
@given(
    dynamics=arrays(min_dims=2, max_dims=3),
    y=arrays(max_dims=1),
    name=st.sampled_from(sorted(SCORES)),
)
def test_scores_raise_only_documented_errors(dynamics, y, name):
    args = (dynamics, y) if requires_labels(name) else (dynamics,)
    try:
        scores = SCORES[name](*args)
    except DOCUMENTED:
        return
    n = dynamics.shape[1]
    assert scores.shape == (n,)
    assert requires_probas(name) == (dynamics.ndim == 3)


@SETTINGS
@given(
    E=arrays(max_dims=3),
    s=arrays(max_dims=2),
    queries=arrays(max_dims=3),
    k=st.integers(-1, 15),
)
def test_extrapolator_raises_only_documented_errors(E, s, queries, k):
    try:
        extrapolator = ImportanceExtrapolator(n_neighbors=k).fit(E, s)
    except DOCUMENTED:
        return
    try:
        predictions = extrapolator.predict(queries)
    except DOCUMENTED:
        return
    assert predictions.shape == (len(queries),)
