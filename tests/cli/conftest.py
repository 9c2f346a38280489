"""Fixtures of the CLI and Go SDK end-to-end tests: a trader's token and the demo's
market data, stored once per session with ``usdcarb data backfill`` (through the gateway
from the replay server's samples) on the session's stack."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from cli.cli_data import END, SERIES, START
from usdcarb.devstack.stack import StackInfo
from usdcarb.gateway.devtoken import mint_dev_token


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
