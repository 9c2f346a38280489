"""The engine's numba cache is emptied when any engine source changes (_cache.drop_stale).

numba checks a cached function against its own file only; without this, an edit to a
kernel called from ``legs.simulate`` leaves the old machine code in use."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from usdcarb.backtest.engine import _cache

pytestmark = pytest.mark.unit


def _sub(root: Path) -> Path:
    return root / f"engine_{hashlib.sha1(str(_cache.ENGINE_DIR).encode()).hexdigest()}"


def test_kernels_compiled_from_other_sources_are_dropped(tmp_path: Path) -> None:
    sub = _sub(tmp_path)
    sub.mkdir()
    (sub / "legs.simulate-10.py311.nbi").write_bytes(b"index")
    (sub / "legs.simulate-10.py311.0.nbc").write_bytes(b"code")
    other = tmp_path / "domain_0123"          # another package's kernels: left alone
    other.mkdir()
    (other / "series_rules.f-1.py311.nbi").write_bytes(b"index")

    assert _cache.drop_stale(tmp_path)          # no marker: compiled from unknown sources
    assert sorted(p.name for p in sub.iterdir()) == [".engine-source"]
    assert (sub / ".engine-source").read_text() == _cache.source_hash()
    assert (other / "series_rules.f-1.py311.nbi").exists()

    (sub / "legs.simulate-10.py311.nbi").write_bytes(b"index")   # compiled from these
    assert not _cache.drop_stale(tmp_path)
    assert (sub / "legs.simulate-10.py311.nbi").exists()

    (sub / ".engine-source").write_text("0" * 16)                 # the sources changed
    assert _cache.drop_stale(tmp_path)
    assert not (sub / "legs.simulate-10.py311.nbi").exists()


def test_the_hash_covers_every_engine_file() -> None:
    names = sorted(p.name for p in _cache.ENGINE_DIR.glob("*.py"))
    assert {"kernel.py", "loop.py", "legs.py"} <= set(names)
    assert len(_cache.source_hash()) == 16
