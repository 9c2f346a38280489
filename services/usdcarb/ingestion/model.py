"""Records the ingestion store returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

STATS_KEYS = ("requests", "retries", "bars_fetched", "bars_stored", "bars_quarantined",
              "bars_duplicate", "gaps_found")
TERMINAL = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")


@dataclass(frozen=True)
class JobRecord:
    """One ingest job row."""

    id: str
    exchange: str
    symbol: str
    timeframe: str
    mode: str  # IngestMode name
    start_time: datetime | None
    end_time: datetime | None
    state: str  # JobState name
    progress: dict[str, Any]
    stats: dict[str, int]
    cursor_time: datetime | None
    error: dict[str, Any] | None
    creator: str
    create_time: datetime
    update_time: datetime
    finish_time: datetime | None
    version: int
    lease_owner: str | None = None
    owner: str = ""

    @property
    def name(self) -> str:
        return f"ingestJobs/{self.id}"

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


@dataclass
class JobStats:
    """Counters of a running job (mutable while a worker holds it)."""

    values: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATS_KEYS, 0))
    # Told every delta as it is added (the service's metrics count bars as they land).
    on_add: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, stored: dict[str, Any]) -> JobStats:
        return cls({k: int(stored.get(k, 0)) for k in STATS_KEYS})

    def add(self, **deltas: int) -> None:
        for k, v in deltas.items():
            self.values[k] += v
        if self.on_add is not None:
            self.on_add(deltas)


@dataclass(frozen=True)
class SeriesCoverage:
    exchange: str
    symbol: str
    timeframe: str
    first: datetime
    last: datetime
    count: int
