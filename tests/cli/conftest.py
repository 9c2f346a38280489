"""Fixtures of the CLI and Go SDK end-to-end tests: a mesh of their own (the demo's market
data they store must not meet other tests' expectations of an empty market), a trader's
token and the demo's market data, stored once with ``usdcarb data backfill`` (through
the gateway from the replay server's samples)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from cli.cli_data import END, SERIES, START
from testkit import trust_stack
from usdcarb.devstack import free_port, scratch_dir
from usdcarb.devstack.stack import Stack, StackInfo
from usdcarb.gateway.devtoken import mint_dev_token


@pytest.fixture(scope="session")
def stack() -> Iterator[StackInfo]:
    """The whole mesh for the CLI, report and Go SDK tests (one for all of them)."""
    root = scratch_dir("usdcarb-cli-e2e-")
    mesh = Stack(root / "stack", gateway_port=free_port(), fast_postgres=True)
    try:
        info = mesh.up()
        trust_stack(info)  # HTTPS with the stack's dev CA, as every client calls it
        yield info
    finally:
        mesh.down()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def token() -> str:
    return mint_dev_token("cli-trader", ["trader"])


@pytest.fixture(scope="session")
def backfilled(stack: StackInfo, token: str) -> Iterator[list[str]]:
    """Backfill the demo series with ``usdcarb data backfill``; yield its stderr lines."""
    env = {**os.environ, "USDCARB_GATEWAY": stack.gateway, "USDCARB_CA_FILE": stack.ca,
           "USDCARB_TOKEN": token}
    lines: list[str] = []
    for exchange, symbol in SERIES:
        done = subprocess.run(
            [sys.executable, "-m", "usdcarb", "data", "backfill", "--exchange", exchange,
             "--symbol", symbol, "--start", START, "--end", END],
            env=env, capture_output=True, text=True, timeout=180, check=False)
        assert done.returncode == 0, done.stderr
        assert "succeeded" in done.stdout, done.stdout
        lines += done.stderr.splitlines()
    yield lines
