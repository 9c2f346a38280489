"""The delivery engine: events from the stream become delivery rows, rows become attempts.

``Dispatcher`` reads ``usdcarb:events`` in the consumer group ``notification`` (replicas
share the entries; entries a dead replica left pending are reclaimed with XAUTOCLAIM after
``claim_idle_ms``). Each (event, subscription) match is written as one delivery row,
unique on (event id, subscription), and only then is the entry acknowledged: an event is
never lost between Redis and PostgreSQL, and consuming it twice writes nothing twice.

``Deliverer`` leases due rows from PostgreSQL (``store.claim_due``), at most
``per_channel`` per channel at a time, so a slow or dead receiver holds only its own
slots; a lease that runs out (its replica died mid-attempt) makes the row due again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from usdcarb.notification.domain import Backoff, DeliveryState, Verdict, delivery_id
from usdcarb.notification.model import ChannelRecord, DeliveryRecord, Result, StoredEvent
from usdcarb.notification.senders import Senders
from usdcarb.notification.store import NotificationStore
from usdcarb.platform.events import DomainEvent
from usdcarb.platform.streams import Entry, GroupReader

logger = logging.getLogger(__name__)

GROUP = "notification"


class Dispatcher:
    """Turn stream entries into delivery rows, then acknowledge them."""

    def __init__(self, redis: Any, store: NotificationStore, *, stream: str, consumer: str,
                 on_new: Callable[[], None], batch: int = 500, block_ms: int = 1000,
                 claim_idle_ms: int = 30_000) -> None:
        self._store = store
        self._on_new = on_new
        self._reader = GroupReader(redis, stream=stream, group=GROUP, consumer=consumer,
                                   batch=batch, block_ms=block_ms, claim_idle_ms=claim_idle_ms)

    async def ensure_group(self) -> None:
        await self._reader.ensure_group()

    async def step(self) -> int:
        """Handle one batch (entries a dead replica left first); return its size."""
        return await self._reader.step(self._dispatch)

    async def run(self) -> None:
        """Dispatch until cancelled; wait and retry while Redis or PostgreSQL is away."""
        await self._reader.run(self._dispatch, name="dispatcher")

    async def _dispatch(self, entries: Sequence[Entry]) -> None:
        events = []
        for entry_id, fields in entries:
            try:
                events.append(StoredEvent(id=entry_id, event=DomainEvent.from_fields(fields)))
            except (KeyError, ValueError) as exc:  # never block the stream on one bad entry
                logger.error("dropping malformed event %s: %s", entry_id, exc)
        subscriptions = await self._store.enabled_subscriptions() if events else []
        # Keyed by the event's own key when it has one: an event appended twice (a publish
        # retried across a Redis restart) is still delivered once per subscription.
        rows = [(delivery_id(e.event.key or e.id, s.id), s.channel_id, s.id, e)
                for e in events for s in subscriptions
                if s.filter.matches(type_=e.event.type, severity=e.event.severity,
                                    subject=e.event.subject)]
        if await self._store.insert_deliveries(rows):
            self._on_new()


class ResultWriter:
    """Store attempts' results in batches: one UPDATE for all results that arrived while
    the previous one ran (one round trip per delivery would bound throughput)."""

    def __init__(self, store: NotificationStore, owner: str, *, batch: int = 500) -> None:
        self._store = store
        self._owner = owner
        self._batch = batch
        self._queue: list[tuple[Result, asyncio.Future[bool]]] = []
        self._ready = asyncio.Event()
        self._running = False

    async def write(self, result: Result) -> bool:
        """Queue ``result``; return whether it was stored (False: the lease was lost)."""
        if not self._running:  # no batching loop (a replica whose engine is off)
            return result.id in await self._store.record_attempts(self._owner, [result])
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((result, done))
        self._ready.set()
        return await done

    async def run(self) -> None:
        self._running = True
        try:
            await self._run()
        finally:
            self._running = False
            for _, done in self._queue:
                done.cancel()

    async def _run(self) -> None:
        delay = 0.2
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                taken, self._queue = self._queue[:self._batch], self._queue[self._batch:]
                try:
                    stored = await self._store.record_attempts(self._owner,
                                                               [r for r, _ in taken])
                    delay = 0.2
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.warning("results: %s: %s; retrying in %.1fs",
                                   type(exc).__name__, exc, delay)
                    self._queue = taken + self._queue
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                for result, done in taken:
                    if not done.done():
                        done.set_result(result.id in stored)


class Deliverer:
    """Lease due deliveries and attempt them, ``per_channel`` at a time per channel."""

    def __init__(self, store: NotificationStore, senders: Senders, *, owner: str,
                 backoff: Backoff, per_channel: int = 4, max_in_flight: int = 256,
                 lease_s: float = 60.0, poll_s: float = 0.5, default_max_attempts: int = 5,
                 channel_cache_s: float = 1.0, claim_interval_s: float = 0.005) -> None:
        self._store = store
        self._senders = senders
        self.owner = owner
        self._backoff = backoff
        self._per_channel = per_channel
        self._max_in_flight = max_in_flight
        self._lease_s = lease_s
        self._poll_s = poll_s
        self._default_max_attempts = default_max_attempts
        self._channel_cache_s = channel_cache_s
        self._claim_interval_s = claim_interval_s
        self._channels: dict[str, tuple[float, ChannelRecord]] = {}
        self._in_flight: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wakeup = asyncio.Event()
        self._writer = ResultWriter(store, owner)

    def wake(self) -> None:
        """Look for due deliveries now (new rows were written)."""
        self._wakeup.set()

    async def _channel(self, channel_ids: set[str]) -> dict[str, ChannelRecord]:
        now = time.monotonic()
        missing = [c for c in channel_ids
                   if c not in self._channels or self._channels[c][0] < now]
        if missing:
            for cid, channel in (await self._store.get_channels(missing)).items():
                self._channels[cid] = (now + self._channel_cache_s, channel)
        return {c: self._channels[c][1] for c in channel_ids if c in self._channels}

    async def attempt(self, delivery: DeliveryRecord, channel: ChannelRecord, *,
                      on_sent: Callable[[], None] | None = None) -> bool:
        """Make one attempt of a leased delivery and store its result (False: the lease
        was lost meanwhile); ``on_sent`` is called once the receiver has answered, before
        the result is stored."""
        sent = await self._senders.send(channel, delivery)
        if on_sent is not None:
            on_sent()
        attempts = delivery.attempts + 1
        max_attempts = int(channel.config.get("max_attempts") or self._default_max_attempts)
        retry_in = None
        if sent.verdict is Verdict.DELIVERED:
            state = DeliveryState.DELIVERED
        elif sent.verdict is Verdict.RETRY and attempts < max_attempts:
            state = DeliveryState.PENDING
            retry_in = self._backoff.delay(attempts, retry_after_s=sent.retry_after_s)
        else:
            state = DeliveryState.DEAD_LETTERED
        if state is not DeliveryState.DELIVERED:
            logger.info("delivery %s attempt %d: %s -> %s", delivery.name, attempts,
                        sent.error, state.value)
        return await self._writer.write(Result(id=delivery.id, state=state, code=sent.code,
                                               error=sent.error, retry_in_s=retry_in))

    async def deliver_now(self, ids: list[str]) -> list[str]:
        """Lease the named deliveries and attempt them now (TestChannel); return the ids
        whose results were stored."""
        leased = await self._store.claim_due(owner=self.owner, limit=len(ids),
                                             per_channel=len(ids), lease_s=self._lease_s,
                                             ids=ids)
        channels = await self._channel({d.channel_id for d in leased})
        done = []
        for d in leased:
            if d.channel_id in channels and await self.attempt(d, channels[d.channel_id]):
                done.append(d.id)
        return done

    async def _run_one(self, delivery: DeliveryRecord, channel: ChannelRecord) -> None:
        # The channel's slot bounds what its receiver is sent at once: it is free again as
        # soon as the receiver has answered. The row stays leased to this replica until its
        # result is stored (no claim takes it meanwhile), and the task, which counts in
        # ``max_in_flight``, lives until then.
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._in_flight[channel.id] -= 1
                if not self._in_flight[channel.id]:
                    del self._in_flight[channel.id]
                self._wakeup.set()

        try:
            await self.attempt(delivery, channel, on_sent=release)
        except Exception:
            logger.exception("delivery %s: attempt failed; the lease lets it retry",
                             delivery.name)
        finally:
            release()

    async def step(self) -> int:
        """Lease what is due and free to run; start its attempts; return how many."""
        room = self._max_in_flight - len(self._tasks)
        if room <= 0:
            return 0
        leased = await self._store.claim_due(owner=self.owner, limit=room,
                                             per_channel=self._per_channel,
                                             lease_s=self._lease_s, in_flight=self._in_flight)
        channels = await self._channel({d.channel_id for d in leased})
        started = 0
        for d in leased:
            channel = channels.get(d.channel_id)
            if channel is None:
                continue  # deleted meanwhile; its rows went with it
            self._in_flight[channel.id] = self._in_flight.get(channel.id, 0) + 1
            task = asyncio.create_task(self._run_one(d, channel), name=f"deliver-{d.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            started += 1
        return started

    async def run(self) -> None:
        """Deliver until cancelled: on a wake-up, or every ``poll_s`` for retries and
        rows other replicas wrote."""
        writer = asyncio.create_task(self._writer.run(), name="delivery-results")
        try:
            await self._deliver()
        finally:
            writer.cancel()

    async def _deliver(self) -> None:
        delay, last_claim = 0.2, 0.0
        while True:
            try:
                # Under load, completions wake the loop one by one: one claim per
                # ``claim_interval_s`` takes them together instead of one query each.
                wait = last_claim + self._claim_interval_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._wakeup.clear()
                last_claim = time.monotonic()
                started = await self.step()
                delay = 0.2
                if not started:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
                    # cancellation that races the wake-up, and the loop would outlive close().
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._poll_s):
                            await self._wakeup.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("deliverer: %s: %s; retrying in %.1fs",
                               type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def stop(self) -> None:
        """Cancel attempts in flight; their leases run out and another replica retries."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
