"""Progress fan-out and cancellation through Redis, for any replica to serve.

Contract:
- Each job has a progress stream ``<prefix>:progress:<job>`` of serialized events
  (``BacktestEvent`` or ``SweepEvent`` with ``sequence`` left 0) and a counter
  ``<prefix>:seq:<job>``. ``publish`` numbers an event and appends it atomically (one
  Lua script), so numbers are gap-free from 1 whichever process writes: the worker
  parent, its child process, or a replica cancelling a queued job. The stream keeps
  about ``maxlen`` entries (late watchers replay them) and expires ``ttl_s`` after
  its last write.
- ``follow`` yields (sequence, payload) after a given sequence, then blocks for more.
- A cancel request is a key ``<prefix>:cancel:<job>``; workers poll it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

PUBLISH = """
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'seq', seq, 'e', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return seq
"""


@dataclass(frozen=True)
class Channels:
    """Redis key names of the backtest service and their retention."""

    prefix: str = "usdcarb:backtest"
    maxlen: int = 2000
    ttl_s: int = 7 * 86_400

    @property
    def jobs(self) -> str:
        return f"{self.prefix}:jobs"

    def progress(self, job: str) -> str:
        return f"{self.prefix}:progress:{job}"

    def seq(self, job: str) -> str:
        return f"{self.prefix}:seq:{job}"

    def cancel(self, job: str) -> str:
        return f"{self.prefix}:cancel:{job}"

    @property
    def sweeps(self) -> str:
        """The sweep lane's job stream (``jobs`` is the backtest lane)."""
        return f"{self.prefix}:sweeps"

    @property
    def ready(self) -> str:
        """Sorted set of replicas with warm engine processes (score: expiry, epoch s)."""
        return f"{self.prefix}:ready"

    def lane_seconds(self, lane: str) -> str:
        """Recent mean run time of a lane's jobs, in seconds."""
        return f"{self.prefix}:lane-seconds:{lane}"


def _field(fields: dict[Any, Any], name: str) -> Any:
    return fields.get(name.encode(), fields.get(name))


class ProgressBus:
    """Publish and follow job events, request and check cancellation (asyncio client)."""

    def __init__(self, redis: Any, channels: Channels) -> None:
        self._redis = redis
        self.channels = channels
        self._script = redis.register_script(PUBLISH)

    async def publish(self, job: str, payload: bytes) -> int:
        c = self.channels
        seq = await self._script(keys=[c.progress(job), c.seq(job)],
                                 args=[payload, c.maxlen, c.ttl_s])
        return int(seq)

    async def last_sequence(self, job: str) -> int:
        value = await self._redis.get(self.channels.seq(job))
        return int(value or 0)

    async def latest(self, job: str) -> tuple[int, bytes] | None:
        entries = await self._redis.xrevrange(self.channels.progress(job), count=1)
        if not entries:
            return None
        _id, fields = entries[0]
        return int(_field(fields, "seq")), bytes(_field(fields, "e"))

    async def follow(
        self, job: str, after_sequence: int, *, block_ms: int = 1000
    ) -> AsyncIterator[list[tuple[int, bytes]]]:
        """Yield batches of (sequence, payload) newer than ``after_sequence``; an empty
        batch after each ``block_ms`` without news, so the caller can check the job."""
        key = self.channels.progress(job)
        cursor = "0-0"
        while True:
            reply = await self._redis.xread({key: cursor}, count=200, block=block_ms)
            batch: list[tuple[int, bytes]] = []
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    cursor = entry_id
                    seq = int(_field(fields, "seq"))
                    if seq > after_sequence:
                        batch.append((seq, bytes(_field(fields, "e"))))
            yield batch

    async def request_cancel(self, job: str) -> None:
        await self._redis.set(self.channels.cancel(job), b"1", ex=self.channels.ttl_s)

    async def cancel_requested(self, job: str) -> bool:
        return bool(await self._redis.exists(self.channels.cancel(job)))


class SyncProgress:
    """The same publish and cancel check for a worker's child process (sync client)."""

    def __init__(self, url: str, channels: Channels) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self.channels = channels
        self._script = self._redis.register_script(PUBLISH)

    def publish(self, job: str, payload: bytes) -> int:
        c = self.channels
        return int(self._script(keys=[c.progress(job), c.seq(job)],
                                args=[payload, c.maxlen, c.ttl_s]))

    def cancel_requested(self, job: str) -> bool:
        return bool(self._redis.exists(self.channels.cancel(job)))

    def close(self) -> None:
        self._redis.close()
