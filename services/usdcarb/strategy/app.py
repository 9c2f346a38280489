"""Use cases of the strategy service: domain rules applied inside store transactions.

Writes check ownership (``usdcarb.platform.ownership``) on the row they locked, in the
transaction of the write: update/delete a strategy and add a version need the strategy's
owner; moving a version through its lifecycle and deploying it need the version's owner;
stopping a deployment needs the deployment's owner; an admin or a granted service passes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from usdcarb.platform import paging
from usdcarb.platform.errors import FailedPrecondition, InvalidArgument, NotFound, expected
from usdcarb.platform.events import DomainEvent
from usdcarb.platform.ownership import owner_filter, require_owner
from usdcarb.strategy import domain
from usdcarb.strategy.domain import ParameterChange, VersionState
from usdcarb.strategy.kinds import BY_ENUM, BY_SLUG, KINDS, KindSpec
from usdcarb.strategy.model import DeploymentRecord, StrategyRecord, VersionRecord
from usdcarb.strategy.store import StrategyStore

UPDATABLE = ("display_name", "description", "labels")
ENVIRONMENTS = ("DEPLOYMENT_ENVIRONMENT_PAPER", "DEPLOYMENT_ENVIRONMENT_LIVE")


T = TypeVar("T")
logger = logging.getLogger(__name__)


class EventSink(Protocol):
    """Where domain events go (the ``usdcarb:events`` stream in production)."""

    async def publish(self, event: DomainEvent) -> None: ...


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing and the token of the next."""

    items: list[T]
    next_page_token: str


def parse_name(name: str, *collections: str, field: str = "name") -> list[str]:
    """Split "a/{x}/b/{y}" into [x, y], checking the collection segments."""
    parts = name.split("/")
    ok = len(parts) == 2 * len(collections) and all(
        parts[2 * i] == c and parts[2 * i + 1] for i, c in enumerate(collections)
    )
    if not ok:
        pattern = "/".join(f"{c}/{{id}}" for c in collections)
        raise InvalidArgument.for_field(field, f"a resource name {pattern!r}", name)
    return parts[1::2]


def kind_by_slug(name: str) -> KindSpec:
    (slug,) = parse_name(name, "strategyKinds")
    if slug not in BY_SLUG:
        raise NotFound("strategy kind", name)
    return BY_SLUG[slug]


class StrategyApp:
    """Strategies, versions, lifecycle and deployments."""

    def __init__(self, store: StrategyStore, events: EventSink | None = None) -> None:
        self._store = store
        self._events = events

    async def _emit(self, *events: DomainEvent) -> None:
        """Publish facts already committed; a lost notification must not fail the call."""
        for event in events:
            if self._events is None:
                return
            try:
                await self._events.publish(event)
            except Exception:
                logger.exception("could not publish %s for %s", event.type, event.subject)

    @staticmethod
    def kinds() -> tuple[KindSpec, ...]:
        return KINDS

    async def create_strategy(
        self, *, strategy_id: str, display_name: str, description: str, kind: str,
        labels: Mapping[str, str], creator: str, request_id: str,
    ) -> StrategyRecord:
        violations = []
        if kind not in BY_ENUM:
            violations.append(("strategy.kind", expected(
                f"one of {sorted(BY_ENUM)}", kind)))
        if not display_name.strip():
            violations.append(("strategy.display_name", "expected a non-empty name, got ''"))
        if strategy_id:
            domain.check_strategy_id(strategy_id)
        if violations:
            raise InvalidArgument(violations)
        async with self._store.transaction() as conn:
            if request_id:
                done = await self._store.resource_for_request(conn, request_id)
                if done is not None:
                    return await self._store.get_strategy(done.split("/")[1], conn=conn)
            record = StrategyRecord(
                id=strategy_id or f"s-{uuid.uuid4().hex[:12]}", display_name=display_name,
                description=description, kind=kind, labels=dict(labels), creator=creator,
            )
            created = await self._store.insert_strategy(conn, record)
            if request_id:
                await self._store.remember_request(conn, request_id, "CreateStrategy",
                                                   created.name)
            return created

    async def get_strategy(self, name: str) -> StrategyRecord:
        (sid,) = parse_name(name, "strategies")
        return await self._store.get_strategy(sid)

    async def list_strategies(
        self, *, page_size: int, page_token: str, kind: str | None, label: str, owner: str = ""
    ) -> Page[StrategyRecord]:
        size = paging.page_size(page_size)
        label_kv = None
        if label:
            if "=" not in label:
                raise InvalidArgument.for_field("label", "'key=value'", label)
            k, v = label.split("=", 1)
            label_kv = (k, v)
        by = owner_filter(owner)
        filters = {"kind": kind, "label": label, **({"owner": by} if by is not None else {})}
        key = paging.decode_token(page_token, filters)
        after = (datetime.fromisoformat(key[0]), str(key[1])) if key else None
        rows = await self._store.list_strategies(
            limit=size + 1, after=after, kind=kind, label=label_kv, owner=by
        )
        return _page(rows, size, lambda r: [r.create_time, r.id], filters)

    async def update_strategy(
        self, *, name: str, values: Mapping[str, Any], mask: list[str], etag: str
    ) -> StrategyRecord:
        (sid,) = parse_name(name, "strategies", field="strategy.name")
        paths = mask or list(UPDATABLE)
        bad = [p for p in paths if p not in UPDATABLE]
        if bad:
            raise InvalidArgument.for_field("update_mask", f"paths among {list(UPDATABLE)}", bad)
        if "display_name" in paths and not str(values.get("display_name", "")).strip():
            raise InvalidArgument.for_field("strategy.display_name", "a non-empty name", "")
        async with self._store.transaction() as conn:
            current = await self._store.get_strategy(sid, conn=conn, lock=True)
            require_owner(current.owner, resource=current.name)
            _check_etag(current.name, current.etag, etag)
            return await self._store.update_strategy(conn, sid, {p: values[p] for p in paths})

    async def delete_strategy(self, *, name: str, etag: str) -> None:
        (sid,) = parse_name(name, "strategies")
        async with self._store.transaction() as conn:
            current = await self._store.get_strategy(sid, conn=conn, lock=True)
            require_owner(current.owner, resource=current.name)
            _check_etag(current.name, current.etag, etag)
            if await self._store.count_active_deployments(conn, sid):
                raise FailedPrecondition(
                    [("DEPLOYMENT", name, "stop its active deployments first")],
                    reason="STRATEGY_DEPLOYED",
                )
            await self._store.delete_strategy(conn, sid)

    async def create_version(
        self, *, parent: str, parameters: Mapping[str, Any], description: str, creator: str
    ) -> tuple[VersionRecord, bool]:
        """Create a version, or return the existing one with the same content (False)."""
        (sid,) = parse_name(parent, "strategies", field="parent")
        async with self._store.transaction() as conn:
            strategy = await self._store.get_strategy(sid, conn=conn, lock=True)
            require_owner(strategy.owner, resource=strategy.name)
            canon = domain.canonicalize(parameters, kind=BY_ENUM[strategy.kind])
            existing = await self._store.find_version(sid, canon.version_id, conn=conn)
            if existing is not None:
                return existing, False
            created = await self._store.insert_version(
                conn, strategy_id=sid, version_id=canon.version_id,
                parameters=canon.parameters, canonical=canon.canonical_json,
                content_hash=canon.content_hash, description=description, creator=creator,
            )
            return created, True

    async def get_version(self, name: str) -> VersionRecord:
        sid, vid = parse_name(name, "strategies", "versions")
        await self._store.get_strategy(sid)
        return await self._store.get_version(sid, vid)

    async def list_versions(
        self, *, parent: str, page_size: int, page_token: str, state: str | None
    ) -> Page[VersionRecord]:
        (sid,) = parse_name(parent, "strategies", field="parent")
        await self._store.get_strategy(sid)
        size = paging.page_size(page_size)
        filters = {"parent": parent, "state": state}
        key = paging.decode_token(page_token, filters)
        rows = await self._store.list_versions(
            sid, limit=size + 1, after_sequence=int(key[0]) if key else None, state=state
        )
        return _page(rows, size, lambda r: [r.sequence], filters)

    async def diff_versions(self, name: str, other: str) -> list[ParameterChange]:
        a = await self.get_version(name)
        parse_name(other, "strategies", "versions", field="other")
        b = await self.get_version(other)
        kinds = {(await self._store.get_strategy(s.strategy_id)).kind for s in (a, b)}
        if len(kinds) != 1:
            raise FailedPrecondition(
                [("KIND", other, expected(f"a version of kind {sorted(kinds)[0]}",
                                                 sorted(kinds)[-1]))],
                reason="KIND_MISMATCH",
            )
        return domain.diff_parameters(a.parameters, b.parameters)

    async def transition(
        self, *, name: str, target: str, reason: str, actor: str
    ) -> VersionRecord:
        sid, vid = parse_name(name, "strategies", "versions")
        try:
            state = VersionState(target)
        except ValueError:
            raise InvalidArgument.for_field(
                "state", f"one of {[s.value for s in VersionState]}", target
            ) from None
        async with self._store.transaction() as conn:
            version = await self._store.get_version(sid, vid, conn=conn, lock=True)
            require_owner(version.owner, resource=version.name)
            if version.state == state:
                return version
            domain.check_transition(name, version.state, state)
            if state == VersionState.RETIRED and await self._store.count_active_deployments(
                conn, sid, vid
            ):
                raise FailedPrecondition(
                    [("DEPLOYMENT", name, "stop its active deployments before retiring it")],
                    reason="VERSION_DEPLOYED",
                )
            moved = await self._store.set_version_state(conn, version, state, reason, actor)
        await self._emit(version_event(moved, version.state, reason, actor))
        return moved

    async def create_deployment(
        self, *, parent: str, version: str, environment: str, notes: str, creator: str,
        request_id: str,
    ) -> DeploymentRecord:
        (sid,) = parse_name(parent, "strategies", field="parent")
        vsid, vid = parse_name(version, "strategies", "versions", field="deployment.version")
        if vsid != sid:
            raise InvalidArgument.for_field(
                "deployment.version", f"a version of {parent}", version)
        if environment not in ENVIRONMENTS:
            raise InvalidArgument.for_field(
                "deployment.environment", f"one of {list(ENVIRONMENTS)}", environment)
        if environment == "DEPLOYMENT_ENVIRONMENT_LIVE":
            raise FailedPrecondition(
                [("ENVIRONMENT", "DEPLOYMENT_ENVIRONMENT_LIVE",
                  "live trading is not offered: this platform handles no exchange "
                  "credentials and no order leaves it; deploy in PAPER")],
                reason="LIVE_TRADING_UNSUPPORTED",
            )
        async with self._store.transaction() as conn:
            if request_id:
                done = await self._store.resource_for_request(conn, request_id)
                if done is not None:
                    _, dsid, _, did = done.split("/")
                    return await self._store.get_deployment(dsid, did, conn=conn)
            v = await self._store.get_version(sid, vid, conn=conn, lock=True)
            require_owner(v.owner, resource=v.name)
            domain.check_deployable(version, v.state)
            facts = []
            if v.state != VersionState.DEPLOYED:
                why = f"deployed to {environment}"
                moved = await self._store.set_version_state(
                    conn, v, VersionState.DEPLOYED, why, creator
                )
                facts.append(version_event(moved, v.state, why, creator))
            d = await self._store.insert_deployment(
                conn, strategy_id=sid, version_id=vid, environment=environment, notes=notes,
                creator=creator,
            )
            if request_id:
                await self._store.remember_request(conn, request_id, "CreateDeployment", d.name)
        await self._emit(*facts, deployment_event(d, f"{d.name} of {version} started"))
        return d

    async def get_deployment(self, name: str) -> DeploymentRecord:
        sid, did = parse_name(name, "strategies", "deployments")
        return await self._store.get_deployment(sid, did)

    async def list_deployments(
        self, *, parent: str, page_size: int, page_token: str
    ) -> Page[DeploymentRecord]:
        (sid,) = parse_name(parent, "strategies", field="parent")
        await self._store.get_strategy(sid)
        size = paging.page_size(page_size)
        filters = {"parent": parent}
        key = paging.decode_token(page_token, filters)
        after = (datetime.fromisoformat(key[0]), str(key[1])) if key else None
        rows = await self._store.list_deployments(sid, limit=size + 1, after=after)
        return _page(rows, size, lambda r: [r.create_time, r.id], filters)

    async def stop_deployment(self, *, name: str, reason: str) -> DeploymentRecord:
        sid, did = parse_name(name, "strategies", "deployments")
        async with self._store.transaction() as conn:
            d = await self._store.get_deployment(sid, did, conn=conn, lock=True)
            require_owner(d.owner, resource=d.name)
            if d.state != "DEPLOYMENT_STATE_ACTIVE":
                return d
            stopped = await self._store.stop_deployment(conn, d, reason)
        await self._emit(deployment_event(stopped, f"{d.name} stopped" + (
            f": {reason}" if reason else "")))
        return stopped


def version_event(v: VersionRecord, before: VersionState, reason: str,
                  actor: str) -> DomainEvent:
    """The fact that a version moved from ``before`` to its state."""
    return DomainEvent(
        type="EVENT_TYPE_VERSION_STATE_CHANGED", source="strategy", subject=v.name,
        summary=f"{v.name}: {before.value.removeprefix('VERSION_STATE_')} -> "
                f"{v.state.value.removeprefix('VERSION_STATE_')}",
        data={"from_state": before.value, "to_state": v.state.value, "reason": reason,
              "actor": actor})


def deployment_event(d: DeploymentRecord, summary: str) -> DomainEvent:
    """The fact that a deployment started or stopped."""
    return DomainEvent(
        type="EVENT_TYPE_DEPLOYMENT_CHANGED", source="strategy", subject=d.name,
        summary=summary,
        data={"version": f"strategies/{d.strategy_id}/versions/{d.version_id}",
              "environment": d.environment, "state": d.state, "creator": d.creator})


def _check_etag(name: str, current: str, sent: str) -> None:
    if sent and sent != current:
        raise FailedPrecondition(
            [("ETAG", name, expected(f"etag {current!r}", sent))], reason="ETAG_MISMATCH"
        )


def _page(rows: list[T], size: int, key: Any, filters: dict[str, Any]) -> Page[T]:
    if len(rows) <= size:
        return Page(rows, "")
    items = rows[:size]
    return Page(items, paging.encode_token(key(items[-1]), filters))
