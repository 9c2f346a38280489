"""Engine processes fork from a server that has the engine loaded (multiprocessing's
forkserver).

Why: a spawned engine process is a new interpreter that imports the engine (numba, numpy,
pyarrow, the protobuf messages: ~0.75 s) and loads every kernel from numba's cache
(~0.3 s) before its slot is ready, and each slot's process did it again, on the cores
the service needs for its own start. ``start`` launches the forkserver first thing in
the service's ``main``, asking it to import ``PRELOAD`` (engine_preload.py), which loads
the engine and its single-run kernels. So the forkserver loads the engine while the
service imports and connects itself, and a slot's engine process is a fork of a loaded
one: it loads only the sweep kernels (~0.1 s; a parallel kernel starts OpenMP threads,
which must not be running in a process that forks), and a replacement for a dead one is
ready at once.

Not forked from the service itself: it runs grpc and asyncio threads. The forkserver is
one per process and keeps the environment it started with (``NUMBA_CACHE_DIR``); a
runner that needs another (a test's replica on a cache of its own) uses ``"spawn"``.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
from multiprocessing.context import BaseContext
from typing import Literal

PRELOAD = "usdcarb.backtest.engine_preload"
StartMethod = Literal["forkserver", "spawn"]


def start() -> None:
    """Launch the forkserver now (it loads the engine in the background; returns at once)."""
    multiprocessing.set_forkserver_preload([PRELOAD])
    multiprocessing.forkserver.ensure_running()


def context(method: StartMethod) -> BaseContext:
    """The context engine processes start in (the forkserver: launched here if ``start``
    was not called, as in tests)."""
    if method == "forkserver":
        multiprocessing.set_forkserver_preload([PRELOAD])
    return multiprocessing.get_context(method)
