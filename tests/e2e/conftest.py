"""The whole mesh for end-to-end tests: started once per session on free ports."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from usdcarb.devstack import free_port, scratch_dir
from usdcarb.devstack.stack import Stack, StackInfo


@pytest.fixture(scope="session")
def stack() -> Iterator[StackInfo]:
    root = scratch_dir("usdcarb-e2e-")
    mesh = Stack(root / "stack", gateway_port=free_port(), fast_postgres=True)
    try:
        yield mesh.up()
    finally:
        mesh.down()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def gateway(stack: StackInfo) -> str:
    """host:port of the Envoy gateway (REST and gRPC)."""
    return stack.gateway.removeprefix("http://")
