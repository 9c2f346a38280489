"""Helpers for tests: ``await eventually(...)`` instead of sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


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
