"""Pure rules of identity: the role table, lockout, key rotation, API key roles."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import descriptor

from usdcarb.identity import domain
from usdcarb.platform import authz
from usdcarb.platform.errors import InvalidArgument, PermissionDenied

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
MODULES = ("backtest", "identity", "ingestion", "notification", "strategy", "validation")


def every_rpc() -> set[str]:
    found = set()
    for name in MODULES:
        module = importlib.import_module(f"usdcarb.v1.{name}_pb2")
        file: descriptor.FileDescriptor = module.DESCRIPTOR
        for service in file.services_by_name.values():
            found |= {f"{service.full_name}/{m.name}" for m in service.methods}
    return found


def test_every_rpc_of_every_service_is_in_the_role_table_and_nothing_else() -> None:
    rpcs = every_rpc()
    assert len(rpcs) > 60
    assert rpcs == set(authz.METHOD_ROLES)


def test_public_methods_are_exactly_the_token_endpoints_and_jwks() -> None:
    public = {m for m in authz.METHOD_ROLES if authz.is_public(m)}
    assert public == authz.TOKEN_METHODS | authz.MESH_ONLY | {"usdcarb.v1.IdentityService/GetJwks"}


def test_roles_are_ordered_and_each_includes_the_ones_below() -> None:
    run = "usdcarb.v1.BacktestService/RunBacktest"
    assert not authz.may_call(["viewer"], run)
    assert all(authz.may_call([r], run) for r in ("analyst", "trader", "admin"))
    assert authz.may_call(["viewer", "admin"], "usdcarb.v1.IdentityService/ListAuditEvents")
    assert not authz.may_call(["trader"], "usdcarb.v1.IdentityService/ListAuditEvents")
    assert not authz.may_call([], "usdcarb.v1.StrategyService/GetStrategy")
    assert authz.highest_role(["viewer", "trader", "bogus"]) == "trader"
    assert "usdcarb.v1.IdentityService/CreateUser" in authz.permissions("admin")
    assert "usdcarb.v1.IdentityService/CreateUser" not in authz.permissions("trader")


def test_a_usdcarb_method_missing_from_the_table_is_unknown() -> None:
    with pytest.raises(authz.UnknownMethod):
        authz.minimum_role("usdcarb.v1.StrategyService/Nope")
    assert not authz.governed("test.v1.Probe/Echo")


def test_lockout_starts_after_max_failures_and_doubles_up_to_the_cap() -> None:
    policy = domain.LockoutPolicy(max_failures=3, base_lock=timedelta(seconds=10),
                                  max_lock=timedelta(seconds=60))
    assert [policy.lock_for(n).total_seconds() for n in range(1, 8)] == [0, 0, 10, 20, 40, 60, 60]
    assert policy.locked_until(2, T0) is None
    assert policy.locked_until(3, T0) == T0 + timedelta(seconds=10)


def key(kid: str, activate: datetime, retire: datetime | None = None) -> domain.KeyState:
    return domain.KeyState(kid=kid, activate_time=activate, retire_time=retire)


def test_rotation_publishes_the_next_key_before_it_signs_and_keeps_the_previous() -> None:
    lead, overlap = timedelta(minutes=6), timedelta(minutes=5, seconds=30)
    k1 = key("k1", T0)
    plan = domain.plan_rotation([k1], T0 + timedelta(days=7), lead=lead, overlap=overlap)
    k2 = key("k2", plan.activate_time)
    k1 = key("k1", T0, plan.retire["k1"])
    keys = [k1, k2]
    during_lead = T0 + timedelta(days=7, minutes=1)
    assert domain.signing_key(keys, during_lead) == k1
    assert [k.kid for k in domain.published(keys, during_lead)] == ["k2", "k1"]
    after = plan.activate_time + timedelta(seconds=1)
    assert domain.signing_key(keys, after) == k2
    assert [k.kid for k in domain.published(keys, after)] == ["k2", "k1"]
    gone = plan.activate_time + overlap + timedelta(seconds=1)
    assert [k.kid for k in domain.published(keys, gone)] == ["k2"]


def test_rapid_rotations_never_cut_short_a_key_that_may_still_verify_tokens() -> None:
    lead, overlap = timedelta(minutes=1), timedelta(minutes=5)
    first = domain.plan_rotation([key("a", T0)], T0, lead=lead, overlap=overlap)
    keys = [key("a", T0, first.retire["a"]), key("b", first.activate_time)]
    second = domain.plan_rotation(keys, T0 + timedelta(seconds=10), lead=lead, overlap=overlap)
    assert "a" not in second.retire  # keeps the retire time of its own rotation
    assert second.retire["b"] == second.activate_time + overlap


def test_api_key_roles_are_a_non_empty_subset_of_the_owner_roles() -> None:
    assert domain.key_roles(["viewer"], ["trader"]) == ("viewer",)
    with pytest.raises(PermissionDenied):
        domain.key_roles(["admin"], ["trader"])
    with pytest.raises(InvalidArgument):
        domain.key_roles([], ["trader"])


def test_passwords_must_be_long_and_not_contain_the_username() -> None:
    with pytest.raises(InvalidArgument):
        domain.check_password("short")
    with pytest.raises(InvalidArgument):
        domain.check_password("alice-is-my-password", username="alice")
    assert domain.check_password("correct horse battery") == "correct horse battery"


def test_users_me_resolves_to_the_caller_and_others_need_admin() -> None:
    assert domain.user_id_from_name("users/me", "users/u1") == "u1"
    assert domain.require_self_or_admin("u1", "users/u1", ["viewer"]) is False
    assert domain.require_self_or_admin("u2", "users/u1", ["admin"]) is True
    with pytest.raises(PermissionDenied):
        domain.require_self_or_admin("u2", "users/u1", ["trader"])
