"""Domain metrics of the notification service.

- ``usdcarb_notification_deliveries_total{outcome="delivered|retry|dead_lettered"}``: the
  attempts this replica recorded (counted where results are stored, so an attempt whose
  lease was lost meanwhile is not counted);
- ``usdcarb_notification_dead_letters``: deliveries dead-lettered and not redelivered
  (sampled from the store; the same on every replica, dashboards take ``max``);
- ``usdcarb_notification_pending``: deliveries waiting for an attempt (sampled);
- ``usdcarb_notification_alerts_received_total{status="firing|resolved"}``: alerts from
  Alertmanager published as events.
"""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from usdcarb.notification.domain import DeliveryState
from usdcarb.platform.events import DomainEvent
from usdcarb.platform.telemetry import Sampler

_OUTCOMES = {DeliveryState.DELIVERED: "delivered", DeliveryState.PENDING: "retry",
             DeliveryState.DEAD_LETTERED: "dead_lettered"}


class NotificationTelemetry:
    """The notification service's domain metrics, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry, *, pool: Any, sample_s: float = 5.0) -> None:
        self.registry = registry
        self._pool = pool
        self.deliveries = Counter("usdcarb_notification_deliveries",
                                  "Delivery attempts recorded, by outcome.", ["outcome"],
                                  registry=registry)
        for outcome in _OUTCOMES.values():
            self.deliveries.labels(outcome)
        self.dead_letters = Gauge("usdcarb_notification_dead_letters",
                                  "Deliveries dead-lettered and not redelivered.",
                                  registry=registry)
        self.pending = Gauge("usdcarb_notification_pending",
                             "Deliveries waiting for an attempt.", registry=registry)
        self.alerts = Counter("usdcarb_notification_alerts_received",
                              "Alerts from Alertmanager published as events, by status.",
                              ["status"], registry=registry)
        for status in ("firing", "resolved"):
            self.alerts.labels(status)
        self.sampler = Sampler("notification", self.sample, sample_s)

    def watch(self, store: Any) -> None:
        """Count the results ``store.record_attempts`` stores."""
        record = store.record_attempts

        @functools.wraps(record)
        async def counted(owner: str, results: Any, *args: Any, **kwargs: Any) -> Any:
            stored = await record(owner, results, *args, **kwargs)
            for result in results:
                if result.id in stored:
                    self.deliveries.labels(_OUTCOMES.get(result.state, "other")).inc()
            return stored

        store.record_attempts = counted

    def alert(self, event: DomainEvent) -> None:
        self.alerts.labels("resolved" if event.type.endswith("RESOLVED") else "firing").inc()

    async def sample(self) -> None:
        row = await self._pool.fetchrow(
            "SELECT count(*) FILTER (WHERE state = $1) AS dead, "
            "count(*) FILTER (WHERE state = $2) AS pending FROM deliveries",
            DeliveryState.DEAD_LETTERED.value, DeliveryState.PENDING.value)
        self.dead_letters.set(row["dead"])
        self.pending.set(row["pending"])
