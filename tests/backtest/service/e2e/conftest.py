"""The whole mesh for the backtest service's end-to-end tests (one per session)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from usdcarb.devstack import free_port, scratch_dir
from usdcarb.devstack.stack import Stack, StackInfo


@pytest.fixture(scope="session")
def stack() -> Iterator[StackInfo]:
    root = scratch_dir("usdcarb-bt-e2e-")
    mesh = Stack(root / "stack", gateway_port=free_port(), fast_postgres=True)
    try:
        yield mesh.up()
    finally:
        mesh.down()
        shutil.rmtree(root, ignore_errors=True)
