"""Imported by the engine forkserver (engine_server.py), never by the service: loads the
engine and its single-run kernels, so every engine process forks with them loaded.

On an empty numba cache this compiles them here, once, before the first engine process
forks (the slots' warm-up then waits for it: the service reports NOT_SERVING). It never
raises: the forkserver ignores only an ImportError of a preload module, and any other
error would end it; an engine process of a forkserver that failed here loads (or
compiles) what it needs in its own warm-up.
"""

from __future__ import annotations

import sys

try:
    # imported where first used (0.1 s): progress.SyncProgress, by a slot's first job
    import redis  # noqa: F401

    from usdcarb.backtest import worker  # noqa: F401  (what an engine process runs)
    from usdcarb.backtest.engine.warm import warm_up

    # The single-run kernels only: the sweep kernel is parallel, and running it starts
    # OpenMP threads, which a process that forks must not have (each engine process
    # loads the sweep kernels itself, after the fork).
    warm_up("single")
except Exception as exc:
    sys.stderr.write(f"engine forkserver: could not load the engine ({exc!r}); each "
                     "engine process loads it itself\n")
