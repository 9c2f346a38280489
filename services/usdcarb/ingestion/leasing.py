"""The claim loop every leased-job worker of the ingestion service runs (ingest jobs,
follow jobs, archive imports): claim a job while there is room, start it, and otherwise
sleep until a slot frees up or the poll interval passes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


async def claim_loop(*, stopping: asyncio.Event, wake: asyncio.Event, poll_s: float,
                     room: Callable[[], bool], claim: Callable[[], Awaitable[T | None]],
                     start: Callable[[T], None],
                     transient: tuple[type[BaseException], ...], what: str) -> None:
    """Run until ``stopping`` is set. ``claim`` failing with a ``transient`` error (the
    database restarting) is logged and tried again after the poll interval; ``wake``
    set (a slot freed, a job created) skips the rest of the wait."""
    while not stopping.is_set():
        claimed = False
        if room():
            try:
                job = await claim()
            except transient as exc:
                logger.warning("%s claim failed (%s); retrying", what, type(exc).__name__)
                job = None
            if job is not None:
                claimed = True
                start(job)
        if not claimed:
            wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), poll_s)
