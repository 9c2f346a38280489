"""The ownership rule: owner, admin or a granted service writes; nobody else, anonymous never."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from usdcarb.platform import authz
from usdcarb.platform.errors import PermissionDenied, Unauthenticated
from usdcarb.platform.identity import ANONYMOUS, Caller, current_caller
from usdcarb.platform.ownership import (
    NOT_OWNER,
    OWNED_WRITES,
    may_write,
    new_owner,
    owner_filter,
    require_owner,
)
from usdcarb.platform.status import domain_status, unpack_details

pytestmark = pytest.mark.unit

ALICE = Caller(subject="users/alice", roles=frozenset({"trader"}))
BOB = Caller(subject="users/bob", roles=frozenset({"trader"}))
ADMIN = Caller(subject="users/root", roles=frozenset({"admin"}))
BACKTEST = Caller(subject="service:backtest")


@pytest.mark.parametrize(
    ("owner", "caller", "allowed"),
    [
        ("users/alice", ALICE, True),
        ("users/alice", BOB, False),
        ("users/alice", ADMIN, True),
        ("users/alice", BACKTEST, True),
        ("users/alice", ANONYMOUS, False),
        ("", ALICE, False),  # rows from before owners were recorded: admin-only
        ("", ADMIN, True),
        ("", BACKTEST, True),
        ("", ANONYMOUS, False),  # an empty subject never matches an empty owner
        ("users/alice", Caller(subject="users/alice2", roles=frozenset({"trader"})), False),
    ],
)
def test_owner_admin_or_service_may_write(owner: str, caller: Caller, allowed: bool) -> None:
    assert may_write(owner, caller) is allowed


def test_other_user_is_refused_with_not_owner_naming_the_resource_only() -> None:
    with pytest.raises(PermissionDenied) as info:
        require_owner("users/alice", resource="strategies/s1", caller=BOB)
    err = info.value
    assert err.reason == NOT_OWNER
    assert err.metadata == {"resource": "strategies/s1"}
    assert "users/alice" not in err.message  # the owner is not revealed
    assert err.message == "expected the owner of strategies/s1 or role admin, got 'users/bob'"
    status = domain_status(err)
    assert status.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    infos = unpack_details(status, error_details_pb2.ErrorInfo)
    assert [i.reason for i in infos] == [NOT_OWNER]
    assert dict(infos[0].metadata) == {"resource": "strategies/s1"}


def test_anonymous_is_unauthenticated_not_denied() -> None:
    with pytest.raises(Unauthenticated):
        require_owner("users/alice", resource="strategies/s1", caller=ANONYMOUS)


def test_require_owner_reads_the_current_rpc_caller() -> None:
    token = current_caller.set(ALICE)
    try:
        require_owner("users/alice", resource="backtests/b1")
        assert new_owner() == "users/alice"
        with pytest.raises(PermissionDenied):
            require_owner("users/bob", resource="backtests/b1")
    finally:
        current_caller.reset(token)
    with pytest.raises(Unauthenticated):
        require_owner("users/alice", resource="backtests/b1")


def test_owner_filter_resolves_users_me_to_the_caller() -> None:
    token = current_caller.set(ALICE)
    try:
        assert owner_filter("") is None
        assert owner_filter("users/me") == "users/alice"
        assert owner_filter("users/bob") == "users/bob"
    finally:
        current_caller.reset(token)


# Writes that create a new top-level resource (the caller becomes its owner) or that are
# not about an owned resource at all.
NOT_OWNED = {
    "StrategyService": {"CreateStrategy"},
    "BacktestService": {"RunBacktest", "CreateBacktest", "CreateSweep"},
    "IngestionService": {"CreateIngestJob", "CreateArchiveImport"},
}
READ_PREFIXES = ("Get", "List", "Watch", "Diff", "Stream")


def test_every_write_of_an_owned_resource_is_in_the_ownership_table() -> None:
    writes = {
        method for method in authz.METHOD_ROLES
        for service, created in NOT_OWNED.items()
        if method.startswith(f"usdcarb.v1.{service}/")
        and not method.split("/")[1].startswith(READ_PREFIXES)
        and method.split("/")[1] not in created
    } | {"usdcarb.v1.IdentityService/RevokeApiKey"}
    assert writes == set(OWNED_WRITES)
    assert set(OWNED_WRITES) <= set(authz.METHOD_ROLES)
