"""Hand a MarketFrame to the engine process, and its stored columns back, through shared memory.

Why: pickling a million-bar frame (~40 MB) into the executor's pipe and the three
curves (~24 MB) back cost ~0.2 s of a run, twice over in copies. Instead the frame's
columns live in a file in ``/dev/shm`` (RAM; the temp directory where that is missing or
too small) that both processes map: the parent loads the market data straight into it
(``create_frame``: no copy at all) or writes a frame it has (``write_frame``), the child
maps the same pages (``read_frame``: no copy), and writes what the parent stores of a
finished backtest (its encoded curve and trade columns, ``finish.py``) beside it, which
the parent maps (``map_file``). Only small things (a ``FrameRef``, the figures) are
pickled. Mappings are private copy-on-write: neither side ever sees the
other's writes, and a file unlinked while mapped stays readable until unmapped.

Contract: the parent owns both files; ``discard`` removes them after the job, whatever
happened, and a file is never reused (mkstemp names).
"""

from __future__ import annotations

import mmap
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from usdcarb.backtest.engine import MarketFrame, Series


@dataclass(frozen=True)
class FrameRef:
    """Where a frame's columns are: time_ms, then every series' close, then every volume."""

    path: str
    bars: int
    series: tuple[tuple[str, str], ...]  # (venue, symbol)
    # Names the bars exactly (the load's snapshot hash): the engine process keeps the
    # frame under it for the next job over the same bars (worker.py) ...
    key: str = ""
    # ... and then is sent only this (``path`` is an empty file, the job's files' name).
    held: bool = False

    @property
    def trades_path(self) -> str:
        """A finished backtest's trade columns, written by the engine process
        (``finish.py``)."""
        return self.path + ".trades"

    @property
    def finished_path(self) -> str:
        """A finished backtest's stored columns, written by the engine process
        (``finish.py``)."""
        return self.path + ".finished"


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


def map_file(path: str, size: int) -> mmap.mmap | bytes:
    """Map ``size`` bytes of ``path`` read-only (private copy-on-write)."""
    return _map(path, size, shared=False)


def _columns(buf: mmap.mmap | bytes, bars: int, k: int) -> tuple[
        npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    time_ms = np.ndarray((bars,), np.int64, buffer=buf, offset=0)
    closes = np.ndarray((k, bars), np.float64, buffer=buf, offset=8 * bars)
    volumes = np.ndarray((k, bars), np.float64, buffer=buf, offset=8 * bars * (1 + k))
    return time_ms, closes, volumes


def create_frame(bars: int, series: Sequence[tuple[str, str]],
                 held: FrameRef | None = None) -> tuple[
        FrameRef, npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """A new frame file of ``bars`` bars of ``series`` (venue, symbol), mapped: its
    reference and its columns to fill (time, closes [series, bar], volumes [series, bar]).
    The caller fills them before handing the reference on, and discards it after.
    ``held``: the (empty) file of a ``held_frame`` reference becomes the frame's."""
    k = len(series)
    size = _frame_size(bars, k)
    if held is not None:
        fd, path = os.open(held.path, os.O_RDWR), held.path
    else:
        fd, path = tempfile.mkstemp(prefix=_prefix(), dir=_directory(size))
    try:
        os.ftruncate(fd, size)
        os.close(fd)
        time_ms, closes, volumes = _columns(_map(path, size, shared=True), bars, k)
    except BaseException:
        os.unlink(path)
        raise
    return FrameRef(path=path, bars=bars, series=tuple(series)), time_ms, closes, volumes


def held_frame(bars: int, series: Sequence[tuple[str, str]], key: str) -> FrameRef:
    """The reference of a frame the engine process has already (under ``key``): an empty
    file names the job's files. The caller discards it after."""
    # where the frame itself would go: it may be written there after all (create_frame)
    fd, path = tempfile.mkstemp(prefix=_prefix(), dir=_directory(_frame_size(bars,
                                                                             len(series))))
    os.close(fd)
    return FrameRef(path=path, bars=bars, series=tuple(series), key=key, held=True)


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


def discard(ref: FrameRef) -> None:
    """Remove the files of ``ref`` (those that exist)."""
    for path in (ref.path, ref.trades_path, ref.finished_path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
