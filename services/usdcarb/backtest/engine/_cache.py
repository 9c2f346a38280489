"""Where numba keeps the engine's compiled kernels: one known directory, set before numba
is imported.

``NUMBA_CACHE_DIR`` when the environment sets it (a container image sets it to the
directory its build warmed), else ``<repo>/.cache/numba`` beside the checkout (what
``make setup`` warms). ``python -m usdcarb.backtest.engine.warm`` compiles into it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parents[4] / ".cache" / "numba"
CACHE_DIR = os.environ.setdefault("NUMBA_CACHE_DIR", str(DEFAULT_DIR))
ENGINE_DIR = Path(__file__).resolve().parent


def source_hash() -> str:
    """A hash of every engine source file (name and bytes)."""
    digest = hashlib.sha1()
    for path in sorted(ENGINE_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def drop_stale(cache_dir: Path) -> bool:
    """Empty this engine's compiled kernels in ``cache_dir`` when its sources changed.

    numba checks a cached function against its own file only: ``legs.simulate`` cached
    and ``kernel.py`` (which it calls, inlined) edited, the old machine code is loaded
    again without a word. The engine's kernels live in one numba subdirectory
    (``engine_<sha1 of this directory>``, numba's own naming); a marker in it names the
    sources they were compiled from, and a change empties it, under a lock, so every
    kernel is compiled from the code on disk. Returns whether it emptied anything. A
    read-only cache (an image's, warmed by its build from the code it ships) is left as
    it is.
    """
    sub = cache_dir / f"engine_{hashlib.sha1(str(ENGINE_DIR).encode()).hexdigest()}"
    want = source_hash()
    marker = sub / ".engine-source"

    def current() -> bool:
        return marker.is_file() and marker.read_text() == want

    if current():
        return False
    try:
        sub.mkdir(parents=True, exist_ok=True)
        with open(cache_dir / ".engine-source.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if current():
                return False
            emptied = False
            for entry in sub.iterdir():
                if entry.suffix in (".nbi", ".nbc"):
                    entry.unlink(missing_ok=True)
                    emptied = True
                elif entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
            marker.write_text(want)
            return emptied
    except OSError:
        return False


drop_stale(Path(CACHE_DIR))

if "numba" in sys.modules:  # imported before us: make it read the directory now
    from numba.core import config as _config

    _config.reload_config()  # type: ignore[no-untyped-call]
