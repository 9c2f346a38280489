"""Domain metrics of the ingestion service (labels: exchange only, a closed set).

- ``usdcarb_ingestion_bars_stored_total`` / ``_bars_quarantined_total`` / ``_bars_fetched_total``
  and ``usdcarb_ingestion_gaps_found_total``: what the jobs' pages brought, as they land;
- ``usdcarb_ingestion_page_fetch_seconds`` and ``usdcarb_ingestion_page_retries_total``:
  one exchange request (retries and pacing included) and the retries it took;
- ``usdcarb_ingestion_series_lag_seconds``: now minus the newest stored bar, the worst
  series per exchange among the followed ones (series with an incremental or follow
  job), sampled.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from usdcarb.platform.telemetry import Sampler

FETCH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_COUNTED = ("bars_stored", "bars_quarantined", "bars_fetched", "gaps_found")

_LAG_SQL = """
SELECT s.exchange, max(extract(epoch FROM now() - m.ts))::float8 AS lag
FROM (SELECT DISTINCT exchange, symbol, timeframe FROM ingest_jobs
      WHERE mode IN ('INGEST_MODE_INCREMENTAL', 'INGEST_MODE_FOLLOW')) s
CROSS JOIN LATERAL (SELECT ts FROM {table} d
                    WHERE d.exchange = s.exchange AND d.symbol = s.symbol
                      AND d.timeframe = s.timeframe
                    ORDER BY ts DESC LIMIT 1) m
GROUP BY s.exchange
"""


class IngestionTelemetry:
    """The ingestion service's domain metrics, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry, *, pool: object,
                 market_table: str = "market_data", sample_s: float = 5.0) -> None:
        self.registry = registry
        self._pool = pool
        self._sql = _LAG_SQL.format(table=market_table)
        self.counters = {key: Counter(f"usdcarb_ingestion_{key}", f"Ingestion {key.replace('_', ' ')}, "
                                      "by exchange.", ["exchange"], registry=registry)
                         for key in _COUNTED}
        self.fetch = Histogram("usdcarb_ingestion_page_fetch_seconds",
                               "One page (or server-time) request to an exchange, retries "
                               "and pacing included.", ["exchange"], registry=registry,
                               buckets=FETCH_BUCKETS)
        self.retries = Counter("usdcarb_ingestion_page_retries_total",
                               "Retried exchange requests.", ["exchange"], registry=registry)
        self.lag = Gauge("usdcarb_ingestion_series_lag_seconds",
                         "Now minus the newest stored bar of the most lagging followed series.",
                         ["exchange"], registry=registry)
        self.sampler = Sampler("ingestion", self.sample, sample_s)

    def count(self, exchange: str, deltas: Mapping[str, int]) -> None:
        """Count a job's stats deltas (usdcarb.ingestion.model.JobStats.add)."""
        for key, value in deltas.items():
            counter = self.counters.get(key.removesuffix("_total"))
            if counter is not None and value >= 0:  # 0 too: the series exists from then on
                counter.labels(exchange).inc(value)

    def page(self, exchange: str, seconds: float, retries: int) -> None:
        """Record one exchange request."""
        self.fetch.labels(exchange).observe(seconds)
        self.retries.labels(exchange).inc(retries)

    async def sample(self) -> None:
        rows = await self._pool.fetch(self._sql)  # type: ignore[attr-defined]
        for row in rows:
            self.lag.labels(row["exchange"]).set(row["lag"])
