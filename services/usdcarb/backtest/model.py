"""Records of the backtest service, as the application and the store exchange them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class JobState(enum.StrEnum):
    """Job lifecycle (names match usdcarb.v1.JobState)."""

    QUEUED = "JOB_STATE_QUEUED"
    RUNNING = "JOB_STATE_RUNNING"
    SUCCEEDED = "JOB_STATE_SUCCEEDED"
    FAILED = "JOB_STATE_FAILED"
    CANCELLED = "JOB_STATE_CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True, kw_only=True)
class BacktestJob:
    """A backtests row. ``config`` and ``result`` are proto3 JSON; ``error`` holds the
    serialized google.rpc.Status (base64) with its code and message."""

    id: str
    strategy_version: str
    config: dict[str, Any]
    strategy_kind: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    state: JobState = JobState.QUEUED
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    fingerprint_digest: str | None = None
    creator: str = ""
    owner: str = ""
    request_id: str | None = None
    attempts: int = 0
    worker: str | None = None
    last_sequence: int = 0
    create_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None

    @property
    def name(self) -> str:
        return f"backtests/{self.id}"


@dataclass(frozen=True, kw_only=True)
class SweepJob:
    """A sweeps row; ``axes`` is [{"path", "values"}], ``walk_forward`` proto3 JSON."""

    id: str
    strategy_version: str
    config: dict[str, Any]
    axes: list[dict[str, Any]]
    objective: str = "sharpe"
    walk_forward: dict[str, Any] | None = None
    cross_validation: dict[str, Any] | None = None   # CrossValidationSpec, proto3 JSON
    analysis: dict[str, Any] | None = None           # deflatedSharpe / outOfSample
    strategy_kind: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    state: JobState = JobState.QUEUED
    progress: dict[str, Any] = field(default_factory=dict)
    points: list[dict[str, Any]] | None = None
    folds: list[dict[str, Any]] | None = None
    error: dict[str, Any] | None = None
    creator: str = ""
    owner: str = ""
    request_id: str | None = None
    attempts: int = 0
    worker: str | None = None
    last_sequence: int = 0
    create_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None

    @property
    def name(self) -> str:
        return f"sweeps/{self.id}"


@dataclass(frozen=True)
class TradeRows:
    """Leg fills, column by column, ready for COPY (times in epoch ms)."""

    time_ms: Any
    venue: Any
    symbol: Any
    side: Any
    quantity: Any
    price: Any
    fee: Any
    slippage: Any
    round_trip: Any
    signal_bar: Any
    signal_edge_bps: Any
    series: Any = None    # each fill's index into series_names (engine.TradeLog), if known
    series_names: tuple[tuple[str, str], ...] = ()

    def __len__(self) -> int:
        return len(self.time_ms)


@dataclass(frozen=True)
class EquityColumns:
    """An equity curve as little-endian column bytes."""

    points: int
    time_ms: bytes
    equity: bytes
    drawdown: bytes
    exposure: bytes
    # The hold baseline: 8 bytes (one float64) when constant, else a column; b"" if absent.
    baseline: bytes = b""
