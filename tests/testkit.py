"""Helpers for tests: ``await eventually(...)`` instead of sleeps."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# The session stack's gateway keeps identity's JWKS this long (the dev default is 300 s):
# the key-rotation test's publish lead must exceed it, so it is short for tests.
E2E_JWKS_CACHE_S = 8


async def eventually(
    check: Callable[[], Awaitable[T] | T], *, within_s: float = 10.0, interval: float = 0.05
) -> T:
    """Retry ``check`` until it returns a truthy value (or stops raising AssertionError)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            result: Any = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result  # type: ignore[no-any-return]
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within_s}s")
        await asyncio.sleep(interval)


def _shared_data() -> Path:
    """The recorded exchange data: ``$USDCARB_SHARED_DATA`` or ``../shared/data/exchanges``."""
    override = os.environ.get("USDCARB_SHARED_DATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "exchanges"


SHARED_DATA = _shared_data()


def require_shared_data(path: Path = SHARED_DATA) -> Path:
    """Return ``path``; skip the test when it is absent — but fail under CI, where
    ../shared is always beside the clone and a skip would hide a broken test."""
    if path.exists():
        return path
    message = f"recorded exchange data not found at {path} (set USDCARB_SHARED_DATA)"
    if os.environ.get("CI"):
        raise AssertionError(message)
    import pytest

    pytest.skip(message)


_TRUSTED_CAS: list[str] = []


def trust_stack(info: Any) -> None:
    """Make this test process call ``info``'s gateway (a StackInfo) as its clients do: over
    HTTPS trusting the stack's dev CA. ``urllib.request.urlopen`` (the global opener)
    and the SDK (``USDCARB_CA_FILE``) then need nothing else; gRPC tests open channels
    with ``info.channel()`` (gateway) or ``info.channel("strategy")`` (a service's port,
    with the stack's client certificate).

    A session may run several stacks (some test folders start their own), each with its
    own CA: every CA trusted so far stays trusted, so a later stack does not cut the
    tests of an earlier one off."""
    if not info.ca:  # a plaintext stack
        return
    import ssl
    import tempfile
    import urllib.request

    pem = Path(info.ca).read_text()  # kept: a stack's folder goes when it stops
    if pem not in _TRUSTED_CAS:
        _TRUSTED_CAS.append(pem)
    context = ssl.create_default_context()
    for ca in _TRUSTED_CAS:
        context.load_verify_locations(cadata=ca)
    urllib.request.install_opener(
        urllib.request.build_opener(urllib.request.HTTPSHandler(context=context)))
    bundle = Path(tempfile.gettempdir()) / f"usdcarb-test-cas-{os.getpid()}.pem"
    bundle.write_text("".join(_TRUSTED_CAS))
    os.environ["USDCARB_CA_FILE"] = str(bundle)
