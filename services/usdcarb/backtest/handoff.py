"""Hand a MarketFrame to the engine process, and its curves back, through shared memory.

Why: pickling a million-bar frame (~40 MB) into the executor's pipe and the three
curves (~24 MB) back cost ~0.2 s of a run, twice over in copies. Instead the frame's
columns live in a file in ``/dev/shm`` (RAM; the temp directory where that is missing or
too small) that both processes map: the parent loads the market data straight into it
(``create_frame``: no copy at all) or writes a frame it has (``write_frame``), the child
maps the same pages (``read_frame``: no copy), writes its curves and its trade log beside
them and the parent maps those (``take_curves``). Only small things (a ``FrameRef``, the
figures) are pickled. Mappings are private copy-on-write: neither side ever sees the
other's writes, and a file unlinked while mapped stays readable until unmapped.

Contract: the parent owns both files; ``discard`` removes them after the job, whatever
happened, and a file is never reused (mkstemp names).
"""

from __future__ import annotations

import dataclasses
import json
import mmap
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from usdcarb.backtest.engine import BacktestOutput, MarketFrame, Series

# Per-bar curves of a run (``baseline`` may be None: a hold baseline constant at the
# initial equity; engine.BacktestOutput.baseline_curve).
_CURVES = ("equity", "drawdown", "exposure", "baseline")


@dataclass(frozen=True)
class FrameRef:
    """Where a frame's columns are: time_ms, then every series' close, then every volume."""

    path: str
    bars: int
    series: tuple[tuple[str, str], ...]  # (venue, symbol)

    @property
    def curves_path(self) -> str:
        return self.path + ".curves"

    @property
    def trades_path(self) -> str:
        return self.path + ".trades"


SHM = "/dev/shm"
_NAME = re.compile(r"^usdcarb-frame-(\d+)-")


def _prefix() -> str:
    """File names carry the pid of the process that owns them (see ``remove_orphans``)."""
    return f"usdcarb-frame-{os.getpid()}-"


def remove_orphans(directories: Sequence[str | None] = (SHM, None)) -> int:
    """Remove the frame, curve and trade files whose owning process is gone (a service
    killed mid-job cannot discard them, and in /dev/shm they hold memory until reboot);
    return how many. ``None`` is the temp directory."""
    removed = 0
    for directory in directories:
        where = directory or tempfile.gettempdir()
        try:
            names = os.listdir(where)
        except OSError:
            continue
        for name in names:
            m = _NAME.match(name)
            if m is None or _alive(int(m.group(1))):
                continue
            try:
                os.unlink(os.path.join(where, name))
                removed += 1
            except OSError:
                pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True   # someone else's process
    return True


def _directory(size: int) -> str | None:
    """``/dev/shm`` when it is there with room to spare (twice ``size``), else None (the
    temp directory): a container's /dev/shm is often 64 MB."""
    try:
        st = os.statvfs(SHM)
    except OSError:
        return None
    if not os.access(SHM, os.W_OK) or st.f_bavail * st.f_frsize < 2 * size + (64 << 20):
        return None
    return SHM


def _frame_size(bars: int, k: int) -> int:
    return 8 * bars * (1 + 2 * k)


def _map(path: str, size: int, *, shared: bool) -> mmap.mmap | bytes:
    """Map ``size`` bytes of ``path`` (shared: the caller's writes land in the file;
    else private copy-on-write). An empty file gives empty bytes (mmap refuses size 0)."""
    if size == 0:
        return b""
    with open(path, "r+b" if shared else "rb") as f:
        return mmap.mmap(f.fileno(), size,
                         access=mmap.ACCESS_WRITE if shared else mmap.ACCESS_COPY)


def _columns(buf: mmap.mmap | bytes, bars: int, k: int) -> tuple[
        npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    time_ms = np.ndarray((bars,), np.int64, buffer=buf, offset=0)
    closes = np.ndarray((k, bars), np.float64, buffer=buf, offset=8 * bars)
    volumes = np.ndarray((k, bars), np.float64, buffer=buf, offset=8 * bars * (1 + k))
    return time_ms, closes, volumes


def create_frame(bars: int, series: Sequence[tuple[str, str]]) -> tuple[
        FrameRef, npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """A new frame file of ``bars`` bars of ``series`` (venue, symbol), mapped: its
    reference and its columns to fill (time, closes [series, bar], volumes [series, bar]).
    The caller fills them before handing the reference on, and discards it after."""
    k = len(series)
    size = _frame_size(bars, k)
    fd, path = tempfile.mkstemp(prefix=_prefix(), dir=_directory(size))
    try:
        os.ftruncate(fd, size)
        os.close(fd)
        time_ms, closes, volumes = _columns(_map(path, size, shared=True), bars, k)
    except BaseException:
        os.unlink(path)
        raise
    return FrameRef(path=path, bars=bars, series=tuple(series)), time_ms, closes, volumes


def write_frame(frame: MarketFrame, directory: str | None = None) -> FrameRef:
    """Write ``frame``'s columns (native-endian) to a new file; return its reference."""
    size = _frame_size(len(frame), len(frame.series))
    fd, path = tempfile.mkstemp(prefix=_prefix(), dir=directory or _directory(size))
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

    The file is mapped, not read (copy-on-write: the engine may write, the file stays as
    it was). Closes (and volumes) are rows of one [series, bar] array, so the engine's
    layout takes them without a copy (``engine.layout.rows``).
    """
    n, k = ref.bars, len(ref.series)
    size = _frame_size(n, k)
    if os.path.getsize(ref.path) != size:
        raise ValueError(f"expected a frame file of {size} bytes, got "
                         f"{os.path.getsize(ref.path)}")
    time_ms, closes, volumes = _columns(_map(ref.path, size, shared=False), n, k)
    series = [Series(venue=venue, symbol=symbol, close=closes[j], volume=volumes[j])
              for j, (venue, symbol) in enumerate(ref.series)]
    return MarketFrame(time_ms=time_ms, series=tuple(series))


def _send_trades(ref: FrameRef, trades: Any) -> Any:
    """Write the trade log's columns to the trades file (a JSON header, then each column
    8-byte aligned; a column of objects, venue or symbol names, as int32 codes into its
    names); return the log with empty columns. Tens of thousands of fills are megabytes:
    through the executor's pipe they cost a pickle, 64 KB writes and process switches."""
    header: dict[str, Any] = {}
    columns: list[npt.NDArray[Any]] = []
    emptied: dict[str, Any] = {}
    at = 0
    for f in dataclasses.fields(trades):
        a = getattr(trades, f.name)
        if not isinstance(a, np.ndarray) or a.ndim != 1:
            continue
        entry: dict[str, Any] = {}
        if a.dtype == object:
            # By identity: the engine's names are a few shared str objects (no sort of
            # the strings; equal names of distinct objects just get two codes).
            ids = np.fromiter(map(id, a), np.int64, len(a))
            _, first, codes = np.unique(ids, return_index=True, return_inverse=True)
            names = [a[i] for i in first]
            if not all(isinstance(x, str) for x in names):
                continue   # not names: left to the pickle
            entry["names"] = names
            a = codes.astype("<i4")
        col = np.ascontiguousarray(a)
        entry.update(dtype=col.dtype.str, n=len(col), at=at)
        header[f.name] = entry
        columns.append(col)
        at += -(-col.nbytes // 8) * 8
        emptied[f.name] = getattr(trades, f.name)[:0]
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(ref.trades_path, "wb") as out:
        out.write(np.array([len(head)], "<i8").tobytes() + head)
        for col in columns:
            out.write(col.data)
            out.write(b"\0" * (-col.nbytes % 8))
    return dataclasses.replace(trades, **emptied)


def _take_trades(ref: FrameRef, trades: Any) -> Any:
    """Put back the columns ``_send_trades`` wrote, mapped (parent side)."""
    size = os.path.getsize(ref.trades_path)
    with open(ref.trades_path, "rb") as f:
        (length,) = np.fromfile(f, "<i8", 1)
        header = json.loads(f.read(int(length)))
    base = 8 + int(length)
    buf = _map(ref.trades_path, size, shared=False)
    back: dict[str, Any] = {}
    for name, entry in header.items():
        dtype = np.dtype(entry["dtype"])
        if base + entry["at"] + dtype.itemsize * entry["n"] > size:
            raise ValueError(f"expected trade column {name} inside the {size}-byte file")
        col = np.ndarray((entry["n"],), dtype, buffer=buf, offset=base + entry["at"])
        if "names" in entry:
            col = np.array(entry["names"], dtype=object)[col]
        back[name] = col
    return dataclasses.replace(trades, **back)


def send_curves(ref: FrameRef, out: BacktestOutput) -> BacktestOutput:
    """Write ``out``'s per-bar curves (equity, drawdown, exposure and the hold baseline's
    equity when there is one) beside the frame, and its trade log; return ``out``
    without them (child side)."""
    curves = [getattr(out, name) for name in _CURVES]
    arrays = [np.empty(0) if c is None else np.ascontiguousarray(c, np.float64)
              for c in curves]
    with open(ref.curves_path, "wb") as f:
        f.write(np.array([-1 if c is None else len(c) for c in curves], np.int64).data)
        for c in arrays:
            f.write(c.data)
    empty = np.empty(0, np.float64)
    kept: dict[str, Any] = {name: None if c is None else empty
                            for name, c in zip(_CURVES, curves, strict=True)}
    if out.trades is not None:
        kept["trades"] = _send_trades(ref, out.trades)
    return dataclasses.replace(out, **kept)


def take_curves(ref: FrameRef, out: BacktestOutput) -> BacktestOutput:
    """Put back the curves and trades ``send_curves`` wrote, mapped (parent side)."""
    with open(ref.curves_path, "rb") as f:
        sizes = [int(x) for x in np.fromfile(f, np.int64, len(_CURVES))]
    total = 8 * (len(_CURVES) + sum(max(0, k) for k in sizes))
    if len(sizes) != len(_CURVES) or os.path.getsize(ref.curves_path) != total:
        raise ValueError(f"expected curves of {sizes} points ({total} bytes) from the "
                         f"engine process, got {os.path.getsize(ref.curves_path)} bytes")
    buf = _map(ref.curves_path, total, shared=False)
    at = 8 * len(_CURVES)
    curves: dict[str, Any] = {}
    for name, k in zip(_CURVES, sizes, strict=True):
        curves[name] = None if k < 0 else np.ndarray((k,), np.float64, buffer=buf, offset=at)
        at += 8 * max(0, k)
    if out.trades is not None and os.path.exists(ref.trades_path):
        curves["trades"] = _take_trades(ref, out.trades)
    return dataclasses.replace(out, **curves)


def discard(ref: FrameRef) -> None:
    """Remove the files of ``ref`` (those that exist)."""
    for path in (ref.path, ref.curves_path, ref.trades_path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
