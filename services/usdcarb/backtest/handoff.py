"""Hand a MarketFrame to the engine process, and its curves back, through a file.

Why: pickling a million-bar frame (~40 MB) into the executor's pipe and the three
curves (~24 MB) back cost ~0.2 s of a run, twice over in copies. Instead the parent
writes the frame's columns once to a file in the temp directory (``TMPDIR``: page
cache, never synced), the child reads them straight into arrays and writes its curves
beside them, and only small things (a ``FrameRef``, the trades and figures) are pickled.

Contract: the parent owns both files; ``discard`` removes them after the job, whatever
happened, and a file is never reused (mkstemp names).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from usdcarb.backtest.engine import BacktestOutput, MarketFrame, Series

_CURVES = ("equity", "drawdown", "exposure")


@dataclass(frozen=True)
class FrameRef:
    """Where a frame's columns are: time_ms, then every series' close, then every volume."""

    path: str
    bars: int
    series: tuple[tuple[str, str], ...]  # (venue, symbol)

    @property
    def curves_path(self) -> str:
        return self.path + ".curves"


def write_frame(frame: MarketFrame, directory: str | None = None) -> FrameRef:
    """Write ``frame``'s columns (native-endian) to a new file; return its reference."""
    fd, path = tempfile.mkstemp(prefix="usdcarb-frame-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(np.ascontiguousarray(frame.time_ms, np.int64).data)
            for s in frame.series:
                f.write(np.ascontiguousarray(s.close, np.float64).data)
            for s in frame.series:
                f.write(np.ascontiguousarray(s.volume, np.float64).data)
    except BaseException:
        os.unlink(path)
        raise
    return FrameRef(path=path, bars=len(frame),
                    series=tuple((s.venue, s.symbol) for s in frame.series))


def read_frame(ref: FrameRef) -> MarketFrame:
    """Read the frame ``ref`` names (in the engine process).

    Closes (and volumes) land as rows of one [series, bar] array, so the engine's layout
    takes them without a copy (``engine.layout.rows``).
    """
    n, k = ref.bars, len(ref.series)
    with open(ref.path, "rb") as f:
        time_ms = np.fromfile(f, np.int64, n)
        closes = np.fromfile(f, np.float64, k * n).reshape(k, n)
        volumes = np.fromfile(f, np.float64, k * n).reshape(k, n)
    series = [Series(venue=venue, symbol=symbol, close=closes[j], volume=volumes[j])
              for j, (venue, symbol) in enumerate(ref.series)]
    return MarketFrame(time_ms=time_ms, series=tuple(series))


def send_curves(ref: FrameRef, out: BacktestOutput) -> BacktestOutput:
    """Write ``out``'s curves beside the frame; return ``out`` without them (child side)."""
    curves = [np.ascontiguousarray(getattr(out, name), np.float64) for name in _CURVES]
    with open(ref.curves_path, "wb") as f:
        f.write(np.array([len(c) for c in curves], np.int64).data)
        for c in curves:
            f.write(c.data)
    empty = np.empty(0, np.float64)
    return dataclasses.replace(out, equity=empty, drawdown=empty, exposure=empty)


def take_curves(ref: FrameRef, out: BacktestOutput) -> BacktestOutput:
    """Put back the curves ``send_curves`` wrote (parent side)."""
    with open(ref.curves_path, "rb") as f:
        sizes = [int(x) for x in np.fromfile(f, np.int64, len(_CURVES))]
        equity, drawdown, exposure = (np.fromfile(f, np.float64, k) for k in sizes)
    got = [len(equity), len(drawdown), len(exposure)]
    if got != sizes:
        raise ValueError(f"expected curves of {sizes} points from the engine process, "
                         f"got {got}")
    return dataclasses.replace(out, equity=equity, drawdown=drawdown, exposure=exposure)


def discard(ref: FrameRef) -> None:
    """Remove the files of ``ref`` (those that exist)."""
    for path in (ref.path, ref.curves_path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
