"""IdentityService over gRPC against real PostgreSQL (a schema per test), in-process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from usdcarb.identity.app import Actor, IdentityApp
from usdcarb.identity.keyring import KeyRing
from usdcarb.identity.main import SERVICE, audit_hook, build_app, register
from usdcarb.identity.settings import IdentitySettings
from usdcarb.platform import interceptors
from usdcarb.platform.testing import authed_channel, bearer, start_in_process
from usdcarb.v1 import identity_pb2 as pb
from usdcarb.v1 import identity_pb2_grpc

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"


def as_caller(sub: str, *roles: str) -> tuple[tuple[str, str], ...]:
    """Metadata with a verified token for ``sub`` and the client address Envoy adds."""
    return (*bearer(sub, roles), ("x-forwarded-for", "10.0.0.7"))


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def code_and_reason(err: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str]:
    status = rpc_status.from_call(err)
    reason = ""
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reason = info.reason
    return err.code(), reason


class Env:
    def __init__(self, stub: Any, app: IdentityApp, keyring: KeyRing, admin: str) -> None:
        self.stub, self.app, self.keyring = stub, app, keyring
        self.admin = as_caller(admin, "admin")

    async def user(self, username: str, *roles: int) -> pb.User:
        return await self.stub.CreateUser(pb.CreateUserRequest(user=pb.User(
            username=username, password=PASSWORD, roles=list(roles))), metadata=self.admin)

    async def login(self, username: str, password: str = PASSWORD) -> pb.TokenResponse:
        return await self.stub.Login(pb.LoginRequest(username=username, password=password))


@pytest.fixture
async def env(service_pool: Any) -> AsyncIterator[Env]:
    pool = await service_pool("identity")
    settings = IdentitySettings(env="test", lockout_max_failures=3, lockout_base_s=60,
                                key_publish_lead_s=0, bootstrap_admin_username="root",
                                bootstrap_admin_password="toor-secret-for-tests")
    app, keyring = build_app(pool, settings)
    await keyring.start()
    admin = await app.bootstrap_admin("root", "toor-secret-for-tests")
    assert admin is not None and admin.roles == ("admin",)
    hook = audit_hook(app)
    interceptors.denied_call_hooks.append(hook)
    try:
        async with await start_in_process([SERVICE], register(app)) as server:
            async with authed_channel(server.address) as channel:
                yield Env(identity_pb2_grpc.IdentityServiceStub(channel), app, keyring,
                          admin.name)
    finally:
        interceptors.denied_call_hooks.remove(hook)


async def audit(env: Env, action: str = "") -> list[pb.AuditEvent]:
    reply = await env.stub.ListAuditEvents(pb.ListAuditEventsRequest(action=action),
                                           metadata=env.admin)
    return list(reply.events)


async def test_login_issues_an_es256_token_with_every_claim_and_a_kid_from_the_jwks(
    env: Env,
) -> None:
    user = await env.user("alice", pb.ROLE_ANALYST)
    tokens = await env.login("alice")
    header = jwt.get_unverified_header(tokens.access_token)
    assert header["alg"] == "ES256"
    jwks = await env.stub.GetJwks(pb.GetJwksRequest())
    kids = [k.kid for k in jwks.keys]
    assert header["kid"] in kids and "dev-2026-11" in kids  # dev key: env=test only
    jwk = next(k for k in jwks.keys if k.kid == header["kid"])
    public = jwt.PyJWK({"kty": jwk.kty, "crv": jwk.crv, "x": jwk.x, "y": jwk.y}, "ES256")
    claims = jwt.decode(tokens.access_token, public, algorithms=["ES256"],
                        audience="usdcarb-api", issuer="usdcarb-identity")
    assert claims["sub"] == user.name and claims["roles"] == ["analyst"]
    assert {"iat", "nbf", "exp", "jti"} <= set(claims)
    assert claims["exp"] - claims["iat"] == tokens.expires_in == 300
    assert tokens.token_type == "Bearer" and tokens.refresh_token.startswith("rt_")
    events = await audit(env, "login.")
    assert events[0].action == "login.success" and events[0].actor == user.name


async def test_wrong_password_and_unknown_user_are_the_same_unauthenticated(env: Env) -> None:
    await env.user("bob", pb.ROLE_VIEWER)
    for username, password in (("bob", "wrong password here"), ("nobody", PASSWORD)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await env.login(username, password)
        assert code_and_reason(err.value) == (grpc.StatusCode.UNAUTHENTICATED,
                                              "INVALID_CREDENTIALS")
        assert err.value.details() == "invalid username or password"
    failures = await audit(env, "login.failure")
    assert {e.target for e in failures} == {"users/nobody", (await env.stub.GetUser(
        pb.GetUserRequest(name=failures[-1].target), metadata=env.admin)).name}
    assert all(e.client_ip == "" and e.outcome == "failure" for e in failures)


async def test_repeated_failures_lock_the_user_out_even_with_the_right_password(env: Env) -> None:
    await env.user("carol", pb.ROLE_VIEWER)
    for _ in range(3):
        with pytest.raises(grpc.aio.AioRpcError):
            await env.login("carol", "not the password!")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.login("carol")
    assert code_and_reason(err.value) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "ACCOUNT_LOCKED")
    status = rpc_status.from_call(err.value)
    retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert retry, "a locked-out caller learns when to retry"
    assert [e.action for e in await audit(env, "user.lockout")] == ["user.lockout"]


async def test_refresh_rotates_and_a_reused_token_revokes_the_whole_family(env: Env) -> None:
    await env.user("dave", pb.ROLE_TRADER)
    first = await env.login("dave")
    second = await env.stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=first.refresh_token))
    assert second.refresh_token != first.refresh_token
    assert claims_of(second.access_token)["roles"] == ["trader"]
    with pytest.raises(grpc.aio.AioRpcError) as err:  # the rotated-out token again
        await env.stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=first.refresh_token))
    assert code_and_reason(err.value) == (grpc.StatusCode.UNAUTHENTICATED, "INVALID_REFRESH_TOKEN")
    with pytest.raises(grpc.aio.AioRpcError) as err:  # its successor died with the family
        await env.stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=second.refresh_token))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    reuse = await audit(env, "token.reuse")
    assert reuse and reuse[-1].details["revoked"] >= 1


async def test_logout_revokes_the_family_and_only_the_owner_may_do_it(env: Env) -> None:
    user = await env.user("erin", pb.ROLE_VIEWER)
    tokens = await env.login("erin")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.stub.Logout(pb.LogoutRequest(refresh_token=tokens.refresh_token),
                              metadata=as_caller("users/someone-else", "viewer"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await env.stub.Logout(pb.LogoutRequest(refresh_token=tokens.refresh_token),
                          metadata=as_caller(user.name, "viewer"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=tokens.refresh_token))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_api_key_is_shown_once_scoped_expiring_and_revocable(env: Env) -> None:
    user = await env.user("frank", pb.ROLE_TRADER)
    me = as_caller(user.name, "trader")
    expire = timestamp_pb2.Timestamp()
    expire.FromDatetime(datetime.now(UTC) + timedelta(days=30))
    with pytest.raises(grpc.aio.AioRpcError) as err:  # more than the owner holds
        await env.stub.CreateApiKey(pb.CreateApiKeyRequest(parent="users/me", api_key=pb.ApiKey(
            display_name="ci", roles=[pb.ROLE_ADMIN], expire_time=expire)), metadata=me)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    request = pb.CreateApiKeyRequest(parent="users/me", request_id="req-1", api_key=pb.ApiKey(
        display_name="ci", roles=[pb.ROLE_VIEWER], expire_time=expire))
    created = await env.stub.CreateApiKey(request, metadata=me)
    again = await env.stub.CreateApiKey(request, metadata=me)  # lost response, retried
    assert again.secret == created.secret and again.api_key.name == created.api_key.name
    assert created.secret.startswith(created.api_key.prefix)
    listed = await env.stub.ListApiKeys(pb.ListApiKeysRequest(parent="users/me"), metadata=me)
    assert [k.name for k in listed.api_keys] == [created.api_key.name]
    assert created.secret not in str(listed)
    tokens = await env.stub.ExchangeApiKey(pb.ExchangeApiKeyRequest(api_key=created.secret))
    claims = claims_of(tokens.access_token)
    assert claims["roles"] == ["viewer"] and claims["sub"] == user.name
    assert tokens.refresh_token == ""
    revoked = await env.stub.RevokeApiKey(pb.RevokeApiKeyRequest(name=created.api_key.name),
                                          metadata=me)
    assert revoked.HasField("revoke_time")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.stub.ExchangeApiKey(pb.ExchangeApiKeyRequest(api_key=created.secret))
    assert code_and_reason(err.value) == (grpc.StatusCode.UNAUTHENTICATED, "INVALID_API_KEY")
    actions = [e.action for e in await audit(env, "api_key.")]
    assert {"api_key.create", "api_key.exchange", "api_key.revoke"} <= set(actions)


async def test_role_change_is_audited_and_takes_effect_at_the_next_refresh(env: Env) -> None:
    user = await env.user("gina", pb.ROLE_VIEWER)
    tokens = await env.login("gina")
    await env.stub.UpdateUser(pb.UpdateUserRequest(
        user=pb.User(name=user.name, roles=[pb.ROLE_ANALYST]),
        update_mask=field_mask_pb2.FieldMask(paths=["roles"])), metadata=env.admin)
    fresh = await env.stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=tokens.refresh_token))
    assert claims_of(fresh.access_token)["roles"] == ["analyst"]
    change = (await audit(env, "user.roles"))[0]
    assert change.target == user.name and list(change.details["after"]) == ["analyst"]


async def test_disabling_a_user_stops_refresh_and_login(env: Env) -> None:
    user = await env.user("hank", pb.ROLE_VIEWER)
    tokens = await env.login("hank")
    await env.stub.UpdateUser(pb.UpdateUserRequest(
        user=pb.User(name=user.name, disabled=True),
        update_mask=field_mask_pb2.FieldMask(paths=["disabled"])), metadata=env.admin)
    for call in (env.login("hank"), env.stub.RefreshToken(
            pb.RefreshTokenRequest(refresh_token=tokens.refresh_token))):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_change_password_needs_the_current_one_and_ends_sessions(env: Env) -> None:
    user = await env.user("ivan", pb.ROLE_VIEWER)
    me = as_caller(user.name, "viewer")
    tokens = await env.login("ivan")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.stub.ChangePassword(pb.ChangePasswordRequest(
            name="users/me", current_password="nope nope nope", new_password="a brand new secret"),
            metadata=me)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await env.stub.ChangePassword(pb.ChangePasswordRequest(
        name="users/me", current_password=PASSWORD, new_password="a brand new secret"),
        metadata=me)
    await env.login("ivan", "a brand new secret")
    with pytest.raises(grpc.aio.AioRpcError):
        await env.stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=tokens.refresh_token))


async def test_a_call_the_role_table_refuses_is_permission_denied_and_audited(env: Env) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.stub.ListUsers(pb.ListUsersRequest(), metadata=as_caller("users/x", "trader"))
    assert code_and_reason(err.value) == (grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED")
    denied = await audit(env, "call.denied")
    assert denied[0].target == "usdcarb.v1.IdentityService/ListUsers"
    assert denied[0].actor == "users/x" and denied[0].client_ip == "10.0.0.7"
    # A viewer may read its own user but not another's.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.stub.GetUser(pb.GetUserRequest(name="users/other"),
                               metadata=as_caller("users/x", "viewer"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_audit_log_pages_newest_first_and_filters(env: Env) -> None:
    for name in ("u-one", "u-two", "u-three"):
        await env.user(name, pb.ROLE_VIEWER)
    first = await env.stub.ListAuditEvents(
        pb.ListAuditEventsRequest(action="user.create", page_size=2), metadata=env.admin)
    assert len(first.events) == 2 and first.next_page_token
    rest = await env.stub.ListAuditEvents(pb.ListAuditEventsRequest(
        action="user.create", page_size=2, page_token=first.next_page_token), metadata=env.admin)
    targets = [e.details["username"] for e in [*first.events, *rest.events]]
    assert targets == ["u-three", "u-two", "u-one", "root"]
    roles = await env.stub.ListRoles(pb.ListRolesRequest(), metadata=env.admin)
    viewer = next(r for r in roles.roles if r.role == pb.ROLE_VIEWER)
    assert "usdcarb.v1.StrategyService/GetStrategy" in viewer.permissions


async def test_rotation_publishes_the_new_key_and_keeps_the_previous(env: Env) -> None:
    await env.user("kate", pb.ROLE_VIEWER)
    old_kid = jwt.get_unverified_header((await env.login("kate")).access_token)["kid"]
    new_kid = await env.app.rotate_keys(Actor(subject=env.admin[0][0]))
    kids = [k.kid for k in (await env.stub.GetJwks(pb.GetJwksRequest())).keys]
    assert kids[:2] == [new_kid, old_kid]
    signed = jwt.get_unverified_header((await env.login("kate")).access_token)["kid"]
    assert signed == new_kid  # lead time 0 in this test


async def test_two_replicas_bootstrapping_together_make_one_admin_and_both_start(
        service_pool: Any) -> None:
    pool = await service_pool("identity")
    settings = IdentitySettings(env="test", bootstrap_admin_username="root",
                                bootstrap_admin_password="toor-secret-for-tests")
    apps = [build_app(pool, settings)[0] for _ in range(2)]
    made = await asyncio.gather(*(app.bootstrap_admin("root", "toor-secret-for-tests")
                                  for app in apps))
    assert sum(user is not None for user in made) == 1  # the other saw it made: no crash
    assert await pool.fetchval("SELECT count(*) FROM users") == 1
