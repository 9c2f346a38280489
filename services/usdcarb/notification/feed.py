"""Follow the event stream for SubscribeEvents: any replica, the same order for everyone.

Every caller reads ``usdcarb:events`` itself with XREAD from its own cursor (no consumer
group: each caller sees every event), so two callers on two replicas see the same events
in the stream's order, and a caller resuming after the last id it got misses nothing and
sees nothing twice. ``None`` items are heartbeats, yielded after ``heartbeat_s`` without
an event so that proxies keep the stream open.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import ResponseError

from usdcarb.notification.domain import Filter
from usdcarb.notification.model import StoredEvent
from usdcarb.platform.errors import FailedPrecondition, InvalidArgument, expected
from usdcarb.platform.events import DomainEvent

_ID = re.compile(r"^\d+(-\d+)?$")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class EventFeed:
    """Read the stream from a cursor, filtered; stop when ``closing`` is set."""

    def __init__(self, redis: Any, *, stream: str, block_ms: int = 1000,
                 heartbeat_s: float = 15.0, batch: int = 200) -> None:
        self._redis = redis
        self._stream = stream
        self._block_ms = block_ms
        self._heartbeat_s = heartbeat_s
        self._batch = batch
        self.closing = asyncio.Event()

    async def _start(self, after_id: str) -> str:
        if after_id and not _ID.match(after_id):
            raise InvalidArgument.for_field("after_id", 'an event id like "1678406400000-0"',
                                            after_id)
        if not after_id:
            last = await self._redis.xrevrange(self._stream, count=1)
            return _text(last[0][0]) if last else "0-0"
        if after_id in ("0", "0-0"):
            return "0-0"
        try:
            info = await self._redis.xinfo_stream(self._stream)
        except ResponseError:  # no stream yet: nothing was ever removed
            return after_id
        # Lost events: deleted ones after the cursor, or (trimming does not move
        # max-deleted-entry-id) a cursor older than the oldest entry once any was removed.
        deleted = _text(info.get("max-deleted-entry-id") or b"0-0")
        first = info.get("first-entry")
        removed = int(info.get("entries-added") or 0) > int(info.get("length") or 0)
        oldest = _text(first[0]) if first else _text(info.get("last-generated-id") or b"0-0")
        if _id_key(after_id) < _id_key(deleted) or (
                removed and _id_key(after_id) < _id_key(oldest)):
            # Resuming would silently skip events: say so instead.
            raise FailedPrecondition([("CURSOR", after_id, expected(
                f"an id at or after the oldest retained event {oldest}", after_id))],
                reason="CURSOR_EXPIRED")
        return after_id

    async def follow(self, flt: Filter, after_id: str) -> AsyncIterator[StoredEvent | None]:
        """Yield matching events after ``after_id`` ("" = from now), heartbeats as None."""
        cursor = await self._start(after_id)
        quiet_since = time.monotonic()
        while not self.closing.is_set():
            reply = await self._redis.xread({self._stream: cursor}, count=self._batch,
                                            block=self._block_ms)
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    cursor = _text(entry_id)
                    try:
                        event = DomainEvent.from_fields(fields)
                    except (KeyError, ValueError):
                        continue
                    if flt.matches(type_=event.type, severity=event.severity,
                                   subject=event.subject):
                        quiet_since = time.monotonic()
                        yield StoredEvent(id=cursor, event=event)
            if time.monotonic() - quiet_since >= self._heartbeat_s:
                quiet_since = time.monotonic()
                yield None
