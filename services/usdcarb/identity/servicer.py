"""gRPC IdentityService: proto ↔ application calls, nothing else."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from google.protobuf import empty_pb2, struct_pb2, timestamp_pb2

from usdcarb.identity.app import Actor, IdentityApp
from usdcarb.identity.model import ApiKeyRecord, AuditRecord, TokenPair, UserRecord
from usdcarb.platform import authz
from usdcarb.platform.audit import client_ip
from usdcarb.platform.errors import InvalidArgument
from usdcarb.platform.identity import Caller, get_caller
from usdcarb.v1 import identity_pb2 as pb
from usdcarb.v1 import identity_pb2_grpc as pb_grpc

ROLE_TO_PB = {role: pb.Role.Value(f"ROLE_{role.upper()}") for role in authz.ROLES}
PB_TO_ROLE = {number: role for role, number in ROLE_TO_PB.items()}


def actor_of(caller: Caller, context: Any) -> Actor:
    return Actor(subject=caller.subject, roles=caller.roles, client_ip=client_ip(context))


def _ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def _roles_from_pb(numbers: Iterable[int], field: str) -> list[str]:
    roles = []
    for n in numbers:
        if n not in PB_TO_ROLE:
            raise InvalidArgument.for_field(field, "roles VIEWER, ANALYST, TRADER or ADMIN", n)
        roles.append(PB_TO_ROLE[n])
    return roles


def user_to_pb(u: UserRecord) -> pb.User:
    return pb.User(
        name=u.name, username=u.username, display_name=u.display_name, email=u.email,
        roles=[ROLE_TO_PB[r] for r in u.roles], disabled=u.disabled,
        create_time=_ts(u.create_time), last_login_time=_ts(u.last_login_time),
        lock_expire_time=_ts(u.locked_until),
    )


def key_to_pb(k: ApiKeyRecord) -> pb.ApiKey:
    return pb.ApiKey(
        name=k.name, display_name=k.display_name, roles=[ROLE_TO_PB[r] for r in k.roles],
        prefix=k.prefix, expire_time=_ts(k.expire_time), revoke_time=_ts(k.revoke_time),
        create_time=_ts(k.create_time), last_used_time=_ts(k.last_used_time),
        owner=k.owner,
    )


def event_to_pb(e: AuditRecord) -> pb.AuditEvent:
    details = struct_pb2.Struct()
    details.update(e.details)
    return pb.AuditEvent(
        id=str(e.id), time=_ts(e.time), actor=e.actor, action=e.action, target=e.target,
        outcome=e.outcome, client_ip=e.client_ip, details=details,
    )


def tokens_to_pb(t: TokenPair) -> pb.TokenResponse:
    return pb.TokenResponse(
        access_token=t.access_token, token_type="Bearer", expires_in=t.expires_in,
        refresh_token=t.refresh_token, refresh_expires_in=t.refresh_expires_in,
    )


class IdentityServicer(pb_grpc.IdentityServiceServicer):
    """usdcarb.v1.IdentityService."""

    def __init__(self, app: IdentityApp) -> None:
        self._app = app

    async def Login(self, request: pb.LoginRequest, context: Any) -> pb.TokenResponse:
        pair = await self._app.login(request.username, request.password,
                                     actor_of(get_caller(), context))
        return tokens_to_pb(pair)

    async def RefreshToken(self, request: pb.RefreshTokenRequest, context: Any
                           ) -> pb.TokenResponse:
        pair = await self._app.refresh(request.refresh_token, actor_of(get_caller(), context))
        return tokens_to_pb(pair)

    async def Logout(self, request: pb.LogoutRequest, context: Any) -> empty_pb2.Empty:
        await self._app.logout(request.refresh_token, actor_of(get_caller(), context))
        return empty_pb2.Empty()

    async def ExchangeApiKey(self, request: pb.ExchangeApiKeyRequest, context: Any
                             ) -> pb.TokenResponse:
        pair = await self._app.exchange_api_key(request.api_key, actor_of(get_caller(), context))
        return tokens_to_pb(pair)

    async def IssueServiceToken(self, request: pb.IssueServiceTokenRequest, context: Any
                                ) -> pb.TokenResponse:
        pair = await self._app.issue_service_token(request.service, request.credential,
                                                   actor_of(get_caller(), context))
        return tokens_to_pb(pair)

    async def GetJwks(self, request: pb.GetJwksRequest, context: Any) -> pb.GetJwksResponse:
        return pb.GetJwksResponse(keys=[pb.Jwk(**jwk) for jwk in self._app.jwks()])

    async def CreateUser(self, request: pb.CreateUserRequest, context: Any) -> pb.User:
        u = request.user
        user = await self._app.create_user(
            actor_of(get_caller(), context), username=u.username, password=u.password,
            display_name=u.display_name, email=u.email,
            roles=_roles_from_pb(u.roles, "user.roles"), disabled=u.disabled,
            request_id=request.request_id)
        return user_to_pb(user)

    async def GetUser(self, request: pb.GetUserRequest, context: Any) -> pb.User:
        return user_to_pb(await self._app.get_user(actor_of(get_caller(), context), request.name))

    async def ListUsers(self, request: pb.ListUsersRequest, context: Any
                        ) -> pb.ListUsersResponse:
        page = await self._app.list_users(request.page_size, request.page_token)
        return pb.ListUsersResponse(users=[user_to_pb(u) for u in page.items],
                                    next_page_token=page.next_page_token)

    async def UpdateUser(self, request: pb.UpdateUserRequest, context: Any) -> pb.User:
        u = request.user
        mask = list(request.update_mask.paths)
        values = {"display_name": u.display_name, "email": u.email, "disabled": u.disabled,
                  "roles": _roles_from_pb(u.roles, "user.roles") if "roles" in mask or not mask
                  else []}
        user = await self._app.update_user(actor_of(get_caller(), context), u.name, mask,
                                           values=values)
        return user_to_pb(user)

    async def ChangePassword(self, request: pb.ChangePasswordRequest, context: Any
                             ) -> empty_pb2.Empty:
        await self._app.change_password(actor_of(get_caller(), context), request.name,
                                        request.current_password, request.new_password)
        return empty_pb2.Empty()

    async def ListRoles(self, request: pb.ListRolesRequest, context: Any
                        ) -> pb.ListRolesResponse:
        return pb.ListRolesResponse(roles=[
            pb.RoleInfo(role=ROLE_TO_PB[r], permissions=authz.permissions(r))
            for r in authz.ROLES])

    async def CreateApiKey(self, request: pb.CreateApiKeyRequest, context: Any
                           ) -> pb.CreateApiKeyResponse:
        k = request.api_key
        expire = k.expire_time.ToDatetime(tzinfo=UTC) if k.HasField("expire_time") else None
        key, secret = await self._app.create_api_key(
            actor_of(get_caller(), context), request.parent, display_name=k.display_name,
            roles=_roles_from_pb(k.roles, "api_key.roles"), expire_time=expire,
            request_id=request.request_id)
        return pb.CreateApiKeyResponse(api_key=key_to_pb(key), secret=secret)

    async def ListApiKeys(self, request: pb.ListApiKeysRequest, context: Any
                          ) -> pb.ListApiKeysResponse:
        page = await self._app.list_api_keys(actor_of(get_caller(), context), request.parent,
                                             request.page_size, request.page_token)
        return pb.ListApiKeysResponse(api_keys=[key_to_pb(k) for k in page.items],
                                      next_page_token=page.next_page_token)

    async def RevokeApiKey(self, request: pb.RevokeApiKeyRequest, context: Any) -> pb.ApiKey:
        key = await self._app.revoke_api_key(actor_of(get_caller(), context), request.name)
        return key_to_pb(key)

    async def ListAuditEvents(self, request: pb.ListAuditEventsRequest, context: Any
                              ) -> pb.ListAuditEventsResponse:
        page = await self._app.list_audit_events(
            page_size=request.page_size, page_token=request.page_token, action=request.action,
            actor=request.actor,
            start=request.start_time.ToDatetime(tzinfo=UTC)
            if request.HasField("start_time") else None,
            end=request.end_time.ToDatetime(tzinfo=UTC) if request.HasField("end_time") else None)
        return pb.ListAuditEventsResponse(events=[event_to_pb(e) for e in page.items],
                                          next_page_token=page.next_page_token)

