"""The whole mesh for the backtest service's end-to-end tests (one per session)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from testkit import trust_stack
from usdcarb.devstack import free_port, scratch_dir
from usdcarb.devstack.stack import Stack, StackInfo


@pytest.fixture(scope="session")
def stack() -> Iterator[StackInfo]:
    root = scratch_dir("usdcarb-bt-e2e-")
    mesh = Stack(root / "stack", gateway_port=free_port(), fast_postgres=True)
    try:
        info = mesh.up()
        trust_stack(info)  # HTTPS with the stack's dev CA, as every client calls it
        yield info
    finally:
        mesh.down()
        shutil.rmtree(root, ignore_errors=True)
