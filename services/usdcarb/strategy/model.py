"""Records of the strategy service, as the domain and the store exchange them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from usdcarb.strategy.domain import VersionState


@dataclass(frozen=True, kw_only=True)
class StrategyRecord:
    """A strategy row."""

    id: str
    display_name: str
    description: str
    kind: str  # usdcarb.v1.StrategyKind name
    labels: dict[str, str] = field(default_factory=dict)
    creator: str = ""
    create_time: datetime | None = None
    update_time: datetime | None = None
    etag: str = ""
    version_count: int = 0
    latest_version_id: str = ""
    owner: str = ""

    @property
    def name(self) -> str:
        return f"strategies/{self.id}"


@dataclass(frozen=True, kw_only=True)
class VersionRecord:
    """An immutable strategy version row."""

    strategy_id: str
    version_id: str
    sequence: int
    parameters: dict[str, Any]
    canonical: str
    content_hash: str
    description: str
    state: VersionState
    creator: str
    create_time: datetime
    state_time: datetime
    owner: str = ""

    @property
    def name(self) -> str:
        return f"strategies/{self.strategy_id}/versions/{self.version_id}"


@dataclass(frozen=True, kw_only=True)
class DeploymentRecord:
    """A deployment row."""

    strategy_id: str
    id: str
    version_id: str
    environment: str
    state: str
    notes: str
    creator: str
    create_time: datetime
    stop_time: datetime | None
    owner: str = ""

    @property
    def name(self) -> str:
        return f"strategies/{self.strategy_id}/deployments/{self.id}"
