"""The spike rule's rolling median (an order-statistic tree over ranks, numba) equals
pandas' centred rolling median exactly: same windows, NaN and ±inf skipped, the mean of
the two middle values for an even count, min_periods."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from usdcarb.validation.domain import series_rules
from usdcarb.validation.domain.model import Bars, Thresholds
from usdcarb.validation.domain.series_rules import robust_z, robust_z_at, rolling_median

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


def test_robust_z_at_some_rows_equals_the_whole_computation() -> None:
    """The spike rule computes z only around rows that move enough: equal bit for bit
    to the whole series' z at those rows, for sparse rows (stretches), dense rows (one
    computation), rows at either end, and even windows."""
    rng = np.random.default_rng(9)
    for trial in range(60):
        n = int(rng.integers(2, 4000))
        windows = ((61, 1441), (6, 40), (5, 8), (2, 3))[trial % 4]
        r = rng.normal(0, 1e-3, n)
        r[rng.random(n) < 0.2] = 0.0
        r[rng.random(n) < 0.01] = np.nan
        density = (0.001, 0.01, 0.2, 1.0)[trial % 4 if trial < 40 else int(rng.integers(4))]
        at = np.flatnonzero(rng.random(n) < density)
        if trial % 5 == 0:
            at = np.unique(np.r_[0, at, n - 1])
        want = robust_z(r, windows, 5e-4)[at]
        got = robust_z_at(r, at, windows, 5e-4)
        assert np.array_equal(got, want, equal_nan=True), (n, windows, len(at))


def test_spikes_equal_the_rule_over_the_whole_series_z(monkeypatch: pytest.MonkeyPatch) -> None:
    """The short window's upper bound on |z| drops no spike: the findings equal those of
    z computed over the whole series at every row (the rule before the shortcut)."""
    rng = np.random.default_rng(10)
    th = Thresholds()
    cases = []
    for _ in range(12):
        n = int(rng.integers(100, 6000))
        close = 100 * np.exp(np.cumsum(rng.normal(0, 2e-3, n) * (1 + 5 * (rng.random(n) < 0.05))))
        for j in rng.integers(1, n - 1, int(rng.integers(1, 30))):
            # excursions of 1-5 %: robust z from about 4 to 25, many near the threshold
            close[j] *= float(np.exp(rng.choice([-1, 1]) * rng.uniform(0.01, 0.05)))
        shift = int(rng.integers(1, n))
        close[shift:] *= 1.05  # a level shift
        t = np.arange(n, dtype=np.int64) * 60_000
        cases.append(Bars(t, close, close, close, close, np.ones(n)))
    got = [series_rules.spikes(b, np.arange(len(b), dtype=np.int64), th) for b in cases]

    def whole(r: np.ndarray, at: np.ndarray, windows: tuple[int, ...], m: float) -> np.ndarray:
        if len(windows) == 1:  # no bound: every moved row is judged on its full z
            return np.full(len(at), np.inf)
        return np.asarray(series_rules.robust_z(r, windows, m)[at], np.float64)

    monkeypatch.setattr(series_rules, "robust_z_at", whole)
    want = [series_rules.spikes(b, np.arange(len(b), dtype=np.int64), th) for b in cases]
    assert got == want
    assert sum(len(f) for f in got) > 12  # spikes were found
