"""Fixed-window counters shared through Redis, counted locally and flushed in batches.

Contract: ``incr(items)`` adds ``hits`` to each key and returns each key's count in its
window as best known now (the global count from Redis plus what this replica added
since), or raises ``CounterUnavailable`` while Redis is unreachable.

How: a request only touches an in-memory table (a few µs); a flusher thread sends every
pending delta every ``flush_interval_s`` as one EVALSHA of a Lua script (atomic INCRBY,
plus EXPIRE on a key's first increment) and gets the global counts back. No request
waits on Redis, and Redis sees ~1/flush_interval calls per second whatever the load.
Exactness: with one replica the counts are exact (every delta is in Redis or pending
here); with N replicas a caller can overshoot its limit by at most what the other
N-1 replicas admitted during one flush interval (default 10 ms).

Failure: a flush that fails marks Redis down (``incr`` raises, the service applies its
failure mode), keeps the deltas for the next flush, and retries every interval, so
counting resumes by itself when Redis returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# KEYS: counters; ARGV: delta_1, ttl_1, delta_2, ttl_2, ... Returns the new counts.
INCR_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do
  local hits = tonumber(ARGV[2 * i - 1])
  local n = redis.call('INCRBY', key, hits)
  if n == hits then redis.call('EXPIRE', key, tonumber(ARGV[2 * i])) end
  out[i] = n
end
return out
"""

Item = tuple[str, int, int]  # key, hits, ttl seconds


class CounterUnavailable(Exception):
    """Signal that Redis is unreachable: the service applies its failure mode."""


class RedisCounter:
    """Count locally, flush deltas to Redis in one script call per interval."""

    def __init__(self, client: Any, *, flush_interval_s: float = 0.01,
                 cooldown_s: float = 0.5, max_batch: int = 2000) -> None:
        self._script = client.register_script(INCR_SCRIPT)
        self._interval = flush_interval_s
        self._cooldown_s = cooldown_s
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._pending: dict[str, list[int]] = {}  # key -> [delta, ttl]
        self._in_flight: dict[str, int] = {}  # deltas sent, not yet acknowledged
        self._known: dict[str, tuple[int, float]] = {}  # key -> (global count, expires at)
        self._down = False
        self._stopped = threading.Event()
        self._wake = threading.Event()
        self.round_trips = 0
        self.failures = 0
        self._flusher = threading.Thread(target=self._run, name="ratelimit-flush", daemon=True)
        self._flusher.start()

    @property
    def down(self) -> bool:
        """Tell whether the last flush failed."""
        return self._down

    def close(self) -> None:
        """Flush once more and stop the flusher thread."""
        self._stopped.set()
        self._wake.set()
        self._flusher.join(5)

    def incr(self, items: Sequence[Item]) -> list[int]:
        """Add hits to each key; return the counts (raise CounterUnavailable when down)."""
        if self._down:
            raise CounterUnavailable("redis unreachable")
        counts = []
        with self._lock:
            for key, hits, ttl in items:
                entry = self._pending.get(key)
                if entry is None:
                    entry = self._pending[key] = [0, ttl]
                entry[0] += hits
                known = self._known.get(key)
                counts.append((known[0] if known else 0) + self._in_flight.get(key, 0)
                              + entry[0])
        return counts

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self._cooldown_s if self._down else self._interval)
            self._wake.clear()
            self.flush()
        self.flush()

    def flush(self) -> None:
        """Send pending deltas (or a PING while down) and learn the global counts."""
        with self._lock:
            batch = list(self._pending.items())[: self._max_batch]
            for key, (delta, _) in batch:
                del self._pending[key]
                self._in_flight[key] = self._in_flight.get(key, 0) + delta
        if not batch and not self._down:
            self._expire()
            return
        keys = [key for key, _ in batch]
        args: list[int] = []
        for _, (delta, ttl) in batch:
            args += (delta, ttl)
        try:
            self.round_trips += 1
            counts = self._script(keys=keys, args=args) if keys else []
            if not keys:
                self._script.registered_client.ping()
        except (RedisError, OSError) as exc:
            self.failures += 1
            if not self._down:
                logger.warning("rate limit counters unavailable: %s: %s", type(exc).__name__, exc)
            self._down = True
            with self._lock:  # keep the deltas for the next flush
                for key, (delta, ttl) in batch:
                    self._in_flight[key] -= delta
                    entry = self._pending.setdefault(key, [0, ttl])
                    entry[0] += delta
            return
        now = time.monotonic()
        with self._lock:
            for (key, (delta, ttl)), count in zip(batch, counts, strict=True):
                self._in_flight[key] -= delta
                if not self._in_flight[key]:
                    del self._in_flight[key]
                self._known[key] = (int(count), now + ttl)
        if self._down:
            logger.info("rate limit counters available again")
        self._down = False

    def _expire(self) -> None:
        now = time.monotonic()
        if len(self._known) < 10_000:
            return
        with self._lock:
            for key in [k for k, (_, at) in self._known.items() if at <= now]:
                del self._known[key]
