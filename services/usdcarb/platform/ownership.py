"""Decide who may change an owned resource: its owner, an admin, or a granted service.

Owned resources (strategies, strategy versions, deployments, backtests, sweeps, ingest
jobs, API keys) record the subject that created them. The rule for writes (update,
delete, lifecycle moves, deploy/stop, cancel, revoke):

- the owner may write;
- a caller holding the ``admin`` role may write anything;
- a service principal (``service:<name>``) may write: the authorization interceptor has
  already limited it to the methods its service is granted (``authz.SERVICE_GRANTS``),
  and such a call is a system action (the backtest service marks a version BACKTESTED);
- everyone else gets PERMISSION_DENIED with ErrorInfo reason ``NOT_OWNER`` and metadata
  naming the resource, never its owner.

A resource with an empty owner (rows from before owners were recorded) is writable by
admins and services only.

Callers must load the owner in the same transaction as the write (``SELECT ... FOR
UPDATE``, or an owner that no statement ever changes on an id that is never reused), so
a check cannot be overtaken by a concurrent delete-and-recreate. Reads are not checked
here: docs/api.md states the read rule. Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from usdcarb.platform.errors import PermissionDenied, Unauthenticated
from usdcarb.platform.identity import Caller, get_caller

NOT_OWNER: Final = "NOT_OWNER"


def _methods(service: str, **methods: str) -> dict[str, str]:
    return {f"usdcarb.v1.{service}/{m}": resource for m, resource in methods.items()}


# The ownership dimension of the authorization table (``authz.METHOD_ROLES``): each write
# RPC checked against an owner, and the resource whose owner it needs. The e2e ownership
# matrix covers exactly these; tests/platform/test_ownership.py fails when a new write RPC
# of an owned resource appears without a row here.
OWNED_WRITES: Final[Mapping[str, str]] = MappingProxyType({
    **_methods("StrategyService", UpdateStrategy="Strategy", DeleteStrategy="Strategy",
               CreateStrategyVersion="Strategy", TransitionStrategyVersion="StrategyVersion",
               CreateDeployment="StrategyVersion", StopDeployment="Deployment"),
    **_methods("BacktestService", CancelBacktest="Backtest", CancelSweep="Sweep",
               StartPaperRun="Deployment"),
    **_methods("IngestionService", CancelIngestJob="IngestJob",
               CancelArchiveImport="ArchiveImport"),
    **_methods("IdentityService", RevokeApiKey="ApiKey"),
})


def may_write(owner: str, caller: Caller) -> bool:
    """Tell whether ``caller`` may change a resource owned by ``owner``."""
    if not caller.authenticated:
        return False
    if caller.service or caller.is_admin:
        return True
    return bool(owner) and caller.subject == owner


def require_owner(owner: str, *, resource: str, caller: Caller | None = None) -> None:
    """Raise unless the caller (default: the current RPC's) may change ``resource``.

    Unauthenticated for an anonymous caller, PermissionDenied (reason NOT_OWNER,
    metadata ``resource``) for an authenticated one who is neither owner nor admin.
    """
    who = get_caller() if caller is None else caller
    if not who.authenticated:
        raise Unauthenticated()
    if may_write(owner, who):
        return
    raise PermissionDenied(
        f"expected the owner of {resource} or role admin, got {who.subject!r}",
        reason=NOT_OWNER, metadata={"resource": resource},
    )


def owner_filter(value: str) -> str | None:
    """Resolve a list request's ``owner`` filter: None for all, "users/me" the caller."""
    if not value:
        return None
    return get_caller().subject if value == "users/me" else value


def new_owner() -> str:
    """Return the subject that owns a resource the current caller creates now."""
    return get_caller().subject
