"""The spike rule's rolling median (an order-statistic tree over ranks, numba) equals
pandas' centred rolling median exactly: same windows, NaN and ±inf skipped, the mean of
the two middle values for an even count, min_periods."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from usdcarb.validation.domain.series_rules import rolling_median

pytestmark = pytest.mark.unit


def test_rolling_median_equals_pandas_on_random_series_with_gaps_ties_and_infs() -> None:
    rng = np.random.default_rng(7)
    for _ in range(400):
        n, w = int(rng.integers(0, 200)), int(rng.integers(1, 70))
        mp = int(rng.integers(1, min(5, w) + 1))
        v = rng.normal(size=n)
        if rng.random() < 0.5:
            v = np.round(v, 1)  # many ties
        u = rng.random(n)
        v[u < 0.2] = np.nan
        v[(u >= 0.2) & (u < 0.25)] = 0.0
        v[u > 0.97] = np.inf
        v[u > 0.985] = -np.inf
        want = pd.Series(v).rolling(w, center=True, min_periods=mp).median().to_numpy()
        assert np.array_equal(rolling_median(v, w, mp), want, equal_nan=True), (n, w, mp)


def test_rolling_median_equals_pandas_over_the_spike_windows() -> None:
    rng = np.random.default_rng(8)
    r = np.diff(np.log(np.cumprod(1 + rng.normal(0, 1e-3, 5000))))
    moves = np.where(rng.random(r.size) < 0.3, np.nan, r)
    for w in (61, 1441):
        want = pd.Series(moves).rolling(w, center=True, min_periods=5).median().to_numpy()
        assert np.array_equal(rolling_median(moves, w, 5), want, equal_nan=True)
