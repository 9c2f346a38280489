"""Where numba keeps the engine's compiled kernels: one known directory, set before numba
is imported.

``NUMBA_CACHE_DIR`` when the environment sets it (a container image sets it to the
directory its build warmed), else ``<repo>/.cache/numba`` beside the checkout (what
``make setup`` warms). ``python -m usdcarb.backtest.engine.warm`` compiles into it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parents[4] / ".cache" / "numba"
CACHE_DIR = os.environ.setdefault("NUMBA_CACHE_DIR", str(DEFAULT_DIR))

if "numba" in sys.modules:  # imported before us: make it read the directory now
    from numba.core import config as _config

    _config.reload_config()  # type: ignore[no-untyped-call]
