"""Records the validation store returns: series keys, issues, quarantined bars, gaps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from usdcarb.validation.domain.gaps import GapState
from usdcarb.validation.domain.model import Finding


@dataclass(frozen=True)
class Series:
    """One market series: a symbol on an exchange at a timeframe."""

    exchange: str
    symbol: str
    timeframe: str


@dataclass(frozen=True)
class Window:
    """Filters of the listings: empty strings and None match all."""

    exchange: str = ""
    symbol: str = ""
    timeframe: str = ""
    start_ms: int | None = None
    end_ms: int | None = None


@dataclass(frozen=True)
class IssueRecord:
    """A recorded finding."""

    id: int
    series: Series
    finding: Finding
    detect_time: datetime

    @property
    def name(self) -> str:
        return f"validationIssues/{self.id}"


@dataclass(frozen=True)
class QuarantineRecord:
    """A bar rejected by validation, values as received."""

    id: int
    series: Series
    open_time_ms: int
    values: tuple[float, float, float, float, float]
    rules: tuple[str, ...]
    reason: str
    quarantine_time: datetime


@dataclass(frozen=True)
class GapRecord:
    """A recorded gap."""

    id: int
    series: Series
    start_ms: int
    end_ms: int
    missing: int
    state: GapState
    filled: int
    filled_from: tuple[str, ...]
    detect_time: datetime

    @property
    def name(self) -> str:
        return f"gaps/{self.id}"
