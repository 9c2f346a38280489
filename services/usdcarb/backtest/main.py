"""Entry point of the backtest service: ``python -m usdcarb.backtest.main``.

It first starts the engine forkserver (engine_server.py), which loads the engine while
this process imports and starts the service (service.py). This module imports nothing
else at its top: multiprocessing runs the main module of a process again in each process
it starts (as ``__mp_main__``), so every engine process runs this file, and a heavy
import here would cost each of them its own second.
"""

from __future__ import annotations

import os


def main() -> None:
    from usdcarb.backtest import engine_server

    # (environment variables, not the settings: their import is what this overlaps)
    env = {k.upper(): v.strip().lower() for k, v in os.environ.items()}
    if (env.get("USDCARB_BACKTEST_WORKER_PROCESSES") != "0"
            and env.get("USDCARB_BACKTEST_ENGINE_START", "forkserver") == "forkserver"):
        engine_server.start()
    from usdcarb.backtest.service import BacktestSettings, serve
    from usdcarb.platform.bootstrap import run

    settings = BacktestSettings()
    run(settings, lambda: serve(settings))


if __name__ == "__main__":
    main()
