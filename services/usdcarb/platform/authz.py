"""Decide which role may call which RPC: one table, read by services and the gateway.

``METHOD_ROLES`` maps every ``usdcarb.v1`` method (``"usdcarb.v1.Service/Method"``) to
the least privileged role that may call it; roles are ordered
viewer < analyst < trader < admin and each includes the ones below it. ``None`` marks
the public methods a caller uses to obtain a token (or the keys that verify one).

The same table is enforced twice: the gateway renders per-route rules from it
(``usdcarb.gateway.envoy``) and every service's authorization interceptor checks it
again on the verified claims, so a call that slips past one is still refused.
Standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

ROLES: Final = ("viewer", "analyst", "trader", "admin")
RANK: Final[Mapping[str, int]] = MappingProxyType({role: i for i, role in enumerate(ROLES)})
PACKAGE: Final = "usdcarb.v1"

VIEWER, ANALYST, TRADER, ADMIN = ROLES


def _service(name: str, **methods: str | None) -> dict[str, str | None]:
    return {f"{PACKAGE}.{name}/{method}": role for method, role in methods.items()}


# Reads are viewer; creating research (strategies, versions, backtests, sweeps, channels)
# is analyst; touching data and money (ingest, gap fills, approvals, deployments) is
# trader; users and the audit log are admin. Identity RPCs about "users/me" are viewer:
# the identity service itself refuses acting on another user unless the caller is admin.
METHOD_ROLES: Final[Mapping[str, str | None]] = MappingProxyType({
    **_service(
        "IdentityService",
        Login=None, RefreshToken=None, ExchangeApiKey=None, GetJwks=None,
        IssueServiceToken=None,
        Logout=VIEWER, GetUser=VIEWER, ChangePassword=VIEWER, ListRoles=VIEWER,
        CreateApiKey=VIEWER, ListApiKeys=VIEWER, RevokeApiKey=VIEWER,
        CreateUser=ADMIN, ListUsers=ADMIN, UpdateUser=ADMIN, ListAuditEvents=ADMIN,
    ),
    **_service(
        "StrategyService",
        ListStrategyKinds=VIEWER, GetStrategyKind=VIEWER, GetStrategy=VIEWER,
        ListStrategies=VIEWER, GetStrategyVersion=VIEWER, ListStrategyVersions=VIEWER,
        DiffStrategyVersions=VIEWER, GetDeployment=VIEWER, ListDeployments=VIEWER,
        CreateStrategy=ANALYST, UpdateStrategy=ANALYST, DeleteStrategy=ANALYST,
        CreateStrategyVersion=ANALYST,
        TransitionStrategyVersion=TRADER, CreateDeployment=TRADER, StopDeployment=TRADER,
    ),
    **_service(
        "BacktestService",
        GetBacktest=VIEWER, ListBacktests=VIEWER, WatchBacktest=VIEWER,
        ListBacktestTrades=VIEWER, GetEquityCurve=VIEWER, GetSweep=VIEWER, ListSweeps=VIEWER,
        WatchSweep=VIEWER, GetPaperRun=VIEWER, ListPaperFills=VIEWER, ListPaperEquity=VIEWER,
        WatchPaperRun=VIEWER, GetPaperDivergence=VIEWER, StartPaperRun=TRADER,
        RunBacktest=ANALYST, CreateBacktest=ANALYST, CancelBacktest=ANALYST,
        CreateSweep=ANALYST, CancelSweep=ANALYST,
    ),
    **_service(
        "IngestionService",
        ListExchanges=VIEWER, ListMarkets=VIEWER, GetIngestJob=VIEWER, ListIngestJobs=VIEWER,
        WatchIngestJob=VIEWER, GetCandles=VIEWER, StreamCandles=VIEWER,
        CreateIngestJob=TRADER, CancelIngestJob=TRADER,
        GetArchiveImport=VIEWER, ListArchiveImports=VIEWER, WatchArchiveImport=VIEWER,
        CreateArchiveImport=TRADER, CancelArchiveImport=TRADER,
    ),
    **_service(
        "ValidationService",
        ListValidationIssues=VIEWER, ListQuarantinedBars=VIEWER, ListGaps=VIEWER,
        GetQualitySummary=VIEWER, GetSeriesVerdict=VIEWER, GetGapPolicy=VIEWER,
        ValidateCandles=ANALYST, ValidateRange=ANALYST,
        FillGaps=TRADER, SetGapPolicy=TRADER,
    ),
    **_service(
        "NotificationService",
        GetChannel=VIEWER, ListChannels=VIEWER, GetSubscription=VIEWER,
        ListSubscriptions=VIEWER, ListDeliveries=VIEWER, SubscribeEvents=VIEWER,
        CreateChannel=ANALYST, UpdateChannel=ANALYST, DeleteChannel=ANALYST,
        TestChannel=ANALYST, CreateSubscription=ANALYST, UpdateSubscription=ANALYST,
        DeleteSubscription=ANALYST, RedeliverDeliveries=ANALYST, RotateWebhookSecret=ANALYST,
    ),
})

# Service principals (subject ``service:<name>``, tokens from IdentityService.
# IssueServiceToken) hold no role: each may call exactly the methods its work needs and
# nothing else, whatever its token says. Their calls are system actions (the backtest
# service marks a version BACKTESTED once a result is stored), so ownership rules, which
# govern people, do not apply to them.
SERVICE_GRANTS: Final[Mapping[str, frozenset[str]]] = MappingProxyType({
    "backtest": frozenset({
        **_service("StrategyService", GetStrategyVersion=None, GetStrategy=None,
                   TransitionStrategyVersion=None, GetDeployment=None),
        # the follow jobs of paper runs (usdcarb.backtest.paper.follow)
        **_service("IngestionService", CreateIngestJob=None, GetIngestJob=None,
                   CancelIngestJob=None)}),
    "ingestion": frozenset(_service("ValidationService", ValidateCandles=None,
                                    ValidateRange=None)),
    "validation": frozenset(),
    "strategy": frozenset(),
    "notification": frozenset(),
    "identity": frozenset(),
})

# Public methods for services inside the mesh only: the gateway routes none of them.
MESH_ONLY: Final = frozenset({f"{PACKAGE}.IdentityService/IssueServiceToken"})

# Methods with a separate, heavier rate-limit budget (they start CPU-heavy work).
HEAVY_METHODS: Final = frozenset(
    f"{PACKAGE}.BacktestService/{m}" for m in ("RunBacktest", "CreateBacktest", "CreateSweep")
)
# Public methods that hand out tokens: rate-limited per client IP at the gateway.
TOKEN_METHODS: Final = frozenset(
    f"{PACKAGE}.IdentityService/{m}" for m in ("Login", "RefreshToken", "ExchangeApiKey")
)


class UnknownMethod(KeyError):
    """Signal a usdcarb.v1 method missing from the table (refused: fail closed)."""


def governed(method: str) -> bool:
    """Tell whether the table governs ``method`` ("pkg.Service/Method", no leading /)."""
    return method.startswith(PACKAGE + ".")


def is_public(method: str) -> bool:
    """Tell whether ``method`` needs no token."""
    return method in METHOD_ROLES and METHOD_ROLES[method] is None


def minimum_role(method: str) -> str | None:
    """Return the least role allowed to call ``method``, None if public.

    Raise UnknownMethod for a usdcarb.v1 method the table does not list.
    """
    try:
        return METHOD_ROLES[method]
    except KeyError:
        raise UnknownMethod(method) from None


def allowed_roles(method: str) -> frozenset[str]:
    """Return every role that may call ``method`` (all roles for a public method)."""
    least = minimum_role(method)
    floor = 0 if least is None else RANK[least]
    return frozenset(role for role in ROLES if RANK[role] >= floor)


def highest_role(roles: Iterable[str]) -> str | None:
    """Return the most privileged known role among ``roles``, or None."""
    known = [r for r in roles if r in RANK]
    return max(known, key=RANK.__getitem__) if known else None


def implied_roles(role: str) -> frozenset[str]:
    """Return ``role`` and every role below it."""
    return frozenset(r for r in ROLES if RANK[r] <= RANK[role])


def may_call(roles: Iterable[str], method: str) -> bool:
    """Tell whether a caller holding ``roles`` may call ``method`` (table lookup only)."""
    return bool(allowed_roles(method) & set(roles))


def service_may_call(service: str, method: str) -> bool:
    """Tell whether the principal ``service:<service>`` may call ``method``."""
    return method in SERVICE_GRANTS.get(service, frozenset())


def permissions(role: str) -> list[str]:
    """Return the full method names ``role`` may call, sorted (for ListRoles)."""
    return sorted(m for m in METHOD_ROLES if role in allowed_roles(m))
