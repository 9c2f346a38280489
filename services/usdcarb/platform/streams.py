"""Consume a Redis stream in a consumer group: each entry handled, then acknowledged.

Contract of ``GroupReader.step(handle)``: entries a dead consumer left pending longer
than ``claim_idle_ms`` are claimed first (XAUTOCLAIM), else new ones are read (blocking
up to ``block_ms``); ``handle`` gets them as (entry id, fields) and must make its effect
durable and idempotent on the entry id before it returns; only then are they
acknowledged. A consumer that dies in between leaves them pending for another to claim,
so an entry is handled at least once and, with an idempotent handler, takes effect once.
``run`` repeats ``step`` until cancelled and waits out Redis or database outages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from redis.exceptions import RedisError, ResponseError

from usdcarb.platform.audit import as_text

logger = logging.getLogger(__name__)

Fields = Mapping[Any, Any]
Entry = tuple[str, Fields]
Handler = Callable[[Sequence[Entry]], Awaitable[None]]


class GroupReader:
    """One consumer of ``stream`` in ``group``."""

    def __init__(self, redis: Any, *, stream: str, group: str, consumer: str,
                 batch: int = 200, block_ms: int = 1000, claim_idle_ms: int = 30_000) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms

    async def ensure_group(self) -> None:
        """Create the group (and the stream) unless it exists."""
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def step(self, handle: Handler) -> int:
        """Handle one batch (entries a dead consumer left first); return its size."""
        claimed = await self.redis.xautoclaim(
            self.stream, self.group, self.consumer, min_idle_time=self.claim_idle_ms,
            start_id="0-0", count=self.batch)
        entries = [e for e in claimed[1] if e and e[1]]
        if not entries:
            reply = await self.redis.xreadgroup(self.group, self.consumer,
                                                {self.stream: ">"}, count=self.batch,
                                                block=self.block_ms)
            entries = [e for _, got in reply or [] for e in got]
        if not entries:
            return 0
        await handle([(as_text(entry_id), fields) for entry_id, fields in entries])
        await self.redis.xack(self.stream, self.group, *[e[0] for e in entries])
        return len(entries)

    async def run(self, handle: Handler, *, name: str, first_delay_s: float = 0.2) -> None:
        """Handle batches until cancelled; wait and retry (backing off to 5 s) while Redis
        or the handler's store is away."""
        delay, ready = first_delay_s, False
        while True:
            try:
                if not ready:
                    await self.ensure_group()
                    ready = True
                await self.step(handle)
                delay = first_delay_s
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, ConnectionError) as exc:
                # A Redis restarted without its data lost the group: create it again.
                ready = ready and "NOGROUP" not in str(exc)
                logger.warning("%s: %s: %s; retrying in %.1fs", name, type(exc).__name__,
                               exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception:
                logger.exception("%s failed; retrying in %.1fs", name, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
