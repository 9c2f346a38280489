"""Helpers of the dbops tests."""

from __future__ import annotations

import tempfile
from pathlib import Path

from usdcarb.devstack import scratch_dir

SHM = Path("/dev/shm")


def fast_scratch(prefix: str) -> Path:
    """A scratch directory in memory (/dev/shm) where there is one, else on disk.

    These tests write and delete clusters, backup repositories and restored copies
    (~300 MB, ~4,000 files): on the shared machine's disk deleting them alone took 5-14 s.
    """
    if not SHM.is_dir():
        return scratch_dir(prefix)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=SHM))
    path.chmod(0o755)  # the postgres OS user must reach the data directories
    return path
