"""Shared by the peer scripts (run inside .venv-bench): data loading and spread-arb-v1 signals.

Peers trade on the *tradable* grid: the bars where both venues have a close. spread-arb-v1
neither signals nor fills on other bars, so "next bar" is the next tradable bar.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

FEE_A_BPS, FEE_B_BPS, SLIP_BPS, QTY, INIT_CASH = 10.0, 7.5, 1.0, 10_000.0, 10_000_000.0


def load(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    return np.load(folder / "a.npy"), np.load(folder / "b.npy")


def tradable(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (full-grid index of tradable bars, a and b there)."""
    idx = np.flatnonzero(~(np.isnan(a) | np.isnan(b)))
    return idx, a[idx], b[idx]


def signals(a: np.ndarray, b: np.ndarray, entry_bps: float, exit_bps: float,
            same: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (long A entries, short A entries, exits), shifted one bar for next-bar fills."""
    entry_thr = entry_bps / 1e4
    exit_thr = exit_bps / 1e4
    spread = (b - a) / a
    long_a = spread > entry_thr
    short_a = spread < -entry_thr
    ex = np.abs(spread) < exit_thr
    if not same:
        long_a, short_a, ex = (np.concatenate([[False], x[:-1]]) for x in (long_a, short_a, ex))
    return long_a, short_a, ex


def best_of(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    fn()  # warm-up
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def write(folder: Path, name: str, payload: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    np.savez(folder / f"{name}.npz", **arrays)
    (folder / f"{name}.json").write_text(json.dumps(payload))
    sys.stdout.flush()
