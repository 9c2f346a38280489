"""Use cases of the identity service: logins, tokens, users, API keys, the audit log.

Every security-relevant outcome is written to the audit log, refusals included; the
audit row of a refusal is committed on its own, before the error is raised.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from usdcarb.identity import domain
from usdcarb.identity.keyring import Clock, KeyRing, utcnow
from usdcarb.identity.keys import Passwords
from usdcarb.identity.model import (
    ApiKeyRecord,
    AuditRecord,
    RefreshRecord,
    TokenPair,
    UserRecord,
)
from usdcarb.identity.store import IdentityStore
from usdcarb.platform import authz, paging
from usdcarb.platform.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    expected,
)
from usdcarb.platform.ownership import require_owner
from usdcarb.platform.service_auth import credential_matches

BAD_CREDENTIALS = "invalid username or password"
REQUEST_TTL = timedelta(minutes=10)
USER_FIELDS = ("display_name", "email", "roles", "disabled")


@dataclass(frozen=True, kw_only=True)
class Actor:
    """Who calls (from the verified claims) and from where (as the gateway saw it)."""

    subject: str = ""
    roles: frozenset[str] = frozenset()
    client_ip: str = ""


@dataclass(frozen=True, kw_only=True)
class TokenPolicy:
    """Lifetimes and names of the tokens this service issues."""

    issuer: str
    audience: str
    access_ttl: timedelta
    refresh_ttl: timedelta
    api_key_max: timedelta
    # HMAC key service credentials derive from (usdcarb.platform.service_auth).
    service_key: str = ""
    lockout: domain.LockoutPolicy = field(default_factory=domain.LockoutPolicy)


@dataclass(frozen=True)
class Page:
    """One page of a listing and the token of the next."""

    items: list[Any]
    next_page_token: str


class IdentityApp:
    """Identity use cases over the store, the key ring and the password hasher."""

    def __init__(
        self, store: IdentityStore, keyring: KeyRing, passwords: Passwords, policy: TokenPolicy,
        *, secret_box_key: bytes, clock: Clock = utcnow,
    ) -> None:
        self._store = store
        self._keys = keyring
        self._passwords = passwords
        self.policy = policy
        self._clock = clock
        # Pending API key secrets (idempotent retries) are kept encrypted, briefly.
        self._box = Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret_box_key).digest()))

    # ------------------------------------------------------------------ audit
    async def audit(self, actor: Actor, action: str, *, target: str = "", outcome: str = "success",
                    conn: Any = None, **details: Any) -> None:
        await self._store.insert_audit(AuditRecord(
            actor=actor.subject, action=action, target=target, outcome=outcome,
            client_ip=actor.client_ip, details=details), conn=conn)

    async def audit_denied_call(self, actor: Actor, method: str) -> None:
        """Record a call to this service that the authorization table refused."""
        await self._store.insert_audit(AuditRecord.denied_call(
            subject=actor.subject, roles=actor.roles, client_ip=actor.client_ip,
            method=method, service=method.split("/")[0]))

    # ------------------------------------------------------------------ tokens
    def _access(self, user_id: str, roles: Sequence[str], **extra: Any) -> tuple[str, int]:
        ttl = self.policy.access_ttl
        claims = domain.access_claims(
            subject=f"users/{user_id}", roles=roles, issuer=self.policy.issuer,
            audience=self.policy.audience, now=self._clock(), ttl=ttl, extra=extra)
        return self._keys.sign(claims), int(ttl.total_seconds())

    async def _issue(self, conn: Any, user: UserRecord, family_id: str) -> TokenPair:
        access, expires_in = self._access(user.id, user.roles, name=user.username)
        refresh = domain.new_refresh_token()
        record = RefreshRecord(id=domain.new_id(), family_id=family_id, user_id=user.id,
                               expire_time=self._clock() + self.policy.refresh_ttl)
        await self._store.insert_refresh(conn, record, domain.hash_secret(refresh))
        return TokenPair(access_token=access, expires_in=expires_in, refresh_token=refresh,
                         refresh_expires_in=int(self.policy.refresh_ttl.total_seconds()))

    async def login(self, username: str, password: str, actor: Actor) -> TokenPair:
        """Check a password, with lockout after repeated failures; issue a token pair."""
        if not username or not password:
            raise InvalidArgument([(f, "expected a value, got none")
                                   for f, v in (("username", username), ("password", password))
                                   if not v])
        now = self._clock()
        user = await self._store.find_user(username)
        if user is not None and user.locked_until is not None and user.locked_until > now:
            retry = (user.locked_until - now).total_seconds()
            await self.audit(actor, "login.failure", target=user.name, outcome="failure",
                             reason="locked", username=username)
            raise ResourceExhausted(
                [(f"users/{username}", "too many failed logins; locked")], retry_after=retry,
                message=f"too many failed logins; retry in {retry:.0f}s", reason="ACCOUNT_LOCKED")
        stored = user.password_hash if user is not None else None
        ok = await asyncio.to_thread(self._passwords.verify, stored, password)
        if user is None or not ok or user.disabled:
            await self._login_failed(user, username, actor, now, ok)
            raise Unauthenticated(BAD_CREDENTIALS, reason="INVALID_CREDENTIALS")
        async with self._store.transaction() as conn:
            await self._store.record_login(conn, user.id, failures=0, locked_until=None,
                                           login_time=now)
            if self._passwords.needs_rehash(user.password_hash):
                hashed = await asyncio.to_thread(self._passwords.hash, password)
                await self._store.set_password(conn, user.id, hashed)
            pair = await self._issue(conn, user, domain.new_id())
            await self.audit(Actor(subject=user.name, roles=frozenset(user.roles),
                                   client_ip=actor.client_ip),
                             "login.success", target=user.name, conn=conn)
        return pair

    async def _login_failed(self, user: UserRecord | None, username: str, actor: Actor,
                            now: datetime, password_ok: bool) -> None:
        if user is None:
            await self.audit(actor, "login.failure", target=f"users/{username}",
                             outcome="failure", reason="unknown user", username=username)
            return
        if user.disabled and password_ok:
            await self.audit(actor, "login.failure", target=user.name, outcome="failure",
                             reason="disabled", username=username)
            return
        async with self._store.transaction() as conn:
            fresh = await self._store.get_user(user.id, conn=conn, lock=True)
            failures = fresh.failed_logins + 1
            until = self.policy.lockout.locked_until(failures, now)
            await self._store.record_login(conn, user.id, failures=failures, locked_until=until,
                                           login_time=None)
            await self.audit(actor, "login.failure", target=user.name, outcome="failure",
                             conn=conn, reason="bad password", failures=failures,
                             locked_until=until.isoformat() if until else None)
            if until is not None:
                await self.audit(actor, "user.lockout", target=user.name, outcome="failure",
                                 conn=conn, failures=failures, locked_until=until.isoformat())

    async def refresh(self, token: str, actor: Actor) -> TokenPair:
        """Rotate a refresh token; a reused one revokes its whole family."""
        if not token:
            raise InvalidArgument.for_field("refresh_token", "a refresh token", token)
        now = self._clock()
        refused: tuple[str, str, dict[str, Any]] | None = None
        async with self._store.transaction() as conn:
            record = await self._store.find_refresh(conn, domain.hash_secret(token), lock=True)
            if record is None:
                refused = ("token.refresh", "", {"reason": "unknown token"})
            elif record.use_time is not None or record.revoke_time is not None:
                # Reuse of a rotated (or revoked) token: someone holds a stolen copy.
                revoked = await self._store.revoke_family(conn, record.family_id, now)
                refused = ("token.reuse", f"users/{record.user_id}",
                           {"family": record.family_id, "revoked": revoked,
                            "reason": "used" if record.use_time else "revoked"})
            elif record.expire_time <= now:
                refused = ("token.refresh", f"users/{record.user_id}", {"reason": "expired"})
            else:
                user = await self._store.get_user(record.user_id, conn=conn)
                if user.disabled:
                    await self._store.revoke_family(conn, record.family_id, now)
                    refused = ("token.refresh", user.name, {"reason": "user disabled"})
                elif await self._store.mark_refresh_used(conn, record.id, now):
                    pair = await self._issue(conn, user, record.family_id)
                    await self.audit(Actor(subject=user.name, client_ip=actor.client_ip),
                                     "token.refresh", target=user.name, conn=conn,
                                     family=record.family_id)
                    return pair
                else:
                    refused = ("token.reuse", user.name, {"reason": "concurrent use"})
            if refused[0] == "token.reuse":
                # Committed with the revocation, even though the call fails.
                await self.audit(actor, refused[0], target=refused[1], outcome="failure",
                                 conn=conn, **refused[2])
        if refused[0] != "token.reuse":
            await self.audit(actor, refused[0], target=refused[1], outcome="failure",
                             **refused[2])
        raise Unauthenticated("refresh token is invalid, expired or revoked",
                              reason="INVALID_REFRESH_TOKEN")

    async def logout(self, token: str, actor: Actor) -> None:
        """Revoke the family of a refresh token the caller owns (or any, as admin)."""
        if not token:
            raise InvalidArgument.for_field("refresh_token", "a refresh token", token)
        now = self._clock()
        async with self._store.transaction() as conn:
            record = await self._store.find_refresh(conn, domain.hash_secret(token), lock=True)
            if record is None:
                raise Unauthenticated("refresh token is invalid", reason="INVALID_REFRESH_TOKEN")
            domain.require_self_or_admin(record.user_id, actor.subject, actor.roles)
            revoked = await self._store.revoke_family(conn, record.family_id, now)
            await self.audit(actor, "logout", target=f"users/{record.user_id}", conn=conn,
                             family=record.family_id, revoked=revoked)

    async def exchange_api_key(self, secret: str, actor: Actor) -> TokenPair:
        """Exchange a live API key for an access token with the key's roles."""
        if not secret:
            raise InvalidArgument.for_field("api_key", "an API key", secret)
        now = self._clock()
        async with self._store.transaction() as conn:
            key = await self._store.find_api_key(conn, domain.hash_secret(secret))
            reason = ""
            roles: tuple[str, ...] = ()
            if key is None:
                reason = "unknown key"
            elif key.revoke_time is not None:
                reason = "revoked"
            elif key.expire_time <= now:
                reason = "expired"
            else:
                owner = await self._store.get_user(key.user_id, conn=conn)
                held: set[str] = set()
                for role in owner.roles:
                    held |= authz.implied_roles(role)
                # A key never grants more than its owner holds today.
                roles = tuple(r for r in key.roles if r in held)
                if owner.disabled:
                    reason = "owner disabled"
                elif not roles:
                    reason = "owner lost the key's roles"
            if key is not None and not reason:
                await self._store.touch_api_key(conn, key.id, now)
                access, expires_in = self._access(key.user_id, roles, api_key=key.name)
                await self.audit(Actor(subject=f"users/{key.user_id}", client_ip=actor.client_ip),
                                 "api_key.exchange", target=key.name, conn=conn)
                return TokenPair(access_token=access, expires_in=expires_in)
        await self.audit(actor, "api_key.exchange", target=key.name if key else "",
                         outcome="failure", reason=reason)
        raise Unauthenticated("API key is invalid, expired or revoked", reason="INVALID_API_KEY")

    async def issue_service_token(self, service: str, credential: str, actor: Actor) -> TokenPair:
        """Exchange a service's credential for a token of the principal ``service:<name>``.

        The token carries no role: ``authz.SERVICE_GRANTS`` decides what it may call.
        An unknown service and a wrong credential are refused alike.
        """
        if not service:
            raise InvalidArgument.for_field("service", "a service name", service)
        if not credential:
            raise InvalidArgument.for_field("credential", "the service's credential", credential)
        key = self.policy.service_key
        if service not in authz.SERVICE_GRANTS or not key or not credential_matches(
                key, service, credential):
            await self.audit(actor, "service_token.issue", target=f"service:{service}",
                             outcome="failure")
            raise Unauthenticated("service credential is invalid",
                                  reason="INVALID_SERVICE_CREDENTIAL")
        ttl = self.policy.access_ttl
        claims = domain.access_claims(
            subject=f"service:{service}", roles=(), issuer=self.policy.issuer,
            audience=self.policy.audience, now=self._clock(), ttl=ttl)
        return TokenPair(access_token=self._keys.sign(claims),
                         expires_in=int(ttl.total_seconds()))

    def jwks(self) -> list[dict[str, str]]:
        return self._keys.jwks()

    async def rotate_keys(self, actor: Actor) -> str | None:
        """Rotate the signing key now (admin path); the new key signs after the lead time."""
        kid = await self._keys.rotate(only_if_due=False)
        await self.audit(actor, "key.rotate", target=f"signingKeys/{kid}")
        return kid

    # ------------------------------------------------------------------ users
    async def bootstrap_admin(self, username: str, password: str) -> UserRecord | None:
        """Create the first user, an admin, when there is no user at all."""
        if not username or await self._store.count_users() > 0:
            return None
        try:
            return await self.create_user(
                Actor(subject="system:bootstrap", roles=frozenset({"admin"})),
                username=username, password=password, display_name="Bootstrap admin",
                email="", roles=["admin"], disabled=False, request_id="")
        except AlreadyExists:  # another replica starting beside this one made it first
            return None

    async def create_user(self, actor: Actor, *, username: str, password: str,
                          display_name: str, email: str, roles: Iterable[str], disabled: bool,
                          request_id: str) -> UserRecord:
        domain.check_username(username)
        domain.check_password(password, field="user.password", username=username)
        checked = domain.check_roles(roles, field="user.roles")
        hashed = await asyncio.to_thread(self._passwords.hash, password)
        now = self._clock()
        async with self._store.transaction() as conn:
            if request_id:
                seen = await self._store.find_request(conn, request_id, now)
                if seen is not None:
                    return await self._store.get_user(seen["resource"], conn=conn)
            user = UserRecord(id=domain.new_id(), username=username, display_name=display_name,
                              email=email, password_hash=hashed, disabled=disabled, roles=checked)
            await self._store.insert_user(conn, user)
            if request_id:
                await self._store.remember_request(
                    conn, request_id, method="CreateUser", owner=actor.subject,
                    resource=user.id, secret_enc=None, expire_time=now + REQUEST_TTL)
            await self.audit(actor, "user.create", target=user.name, conn=conn,
                             username=username, roles=list(checked))
            return await self._store.get_user(user.id, conn=conn)

    async def get_user(self, actor: Actor, name: str) -> UserRecord:
        user_id = domain.user_id_from_name(name, actor.subject)
        domain.require_self_or_admin(user_id, actor.subject, actor.roles)
        return await self._store.get_user(user_id)

    async def list_users(self, page_size: int, page_token: str) -> Page:
        size = paging.page_size(page_size)
        after = paging.decode_token(page_token, {})
        rows = await self._store.list_users(limit=size + 1, after=after[0] if after else None)
        return _page(rows, size, lambda u: [u.username], {})

    async def update_user(self, actor: Actor, name: str, mask: Sequence[str], *,
                          values: dict[str, Any]) -> UserRecord:
        user_id = domain.user_id_from_name(name, actor.subject, field="user.name")
        paths = list(mask) or list(USER_FIELDS)
        unknown = sorted(set(paths) - set(USER_FIELDS))
        if unknown:
            raise InvalidArgument.for_field("update_mask", f"paths among {list(USER_FIELDS)}",
                                            unknown)
        now = self._clock()
        async with self._store.transaction() as conn:
            user = await self._store.get_user(user_id, conn=conn, lock=True)
            roles = (domain.check_roles(values["roles"], field="user.roles")
                     if "roles" in paths else user.roles)
            disabled = bool(values["disabled"]) if "disabled" in paths else user.disabled
            if user.name == actor.subject and ("admin" not in roles or disabled):
                raise FailedPrecondition(
                    [("SELF_LOCKOUT", user.name, "an admin cannot remove their own admin role "
                      "or disable themselves")], reason="SELF_LOCKOUT")
            await self._store.update_user(
                conn, user_id,
                display_name=values["display_name"] if "display_name" in paths
                else user.display_name,
                email=values["email"] if "email" in paths else user.email, disabled=disabled)
            if set(roles) != set(user.roles):
                await self._store.set_roles(conn, user_id, roles)
                await self.audit(actor, "user.roles", target=user.name, conn=conn,
                                 before=list(user.roles), after=list(roles))
            if disabled != user.disabled:
                if disabled:
                    await self._store.revoke_user_tokens(conn, user_id, now)
                await self.audit(actor, "user.disable" if disabled else "user.enable",
                                 target=user.name, conn=conn)
            return await self._store.get_user(user_id, conn=conn)

    async def change_password(self, actor: Actor, name: str, current: str, new: str) -> None:
        user_id = domain.user_id_from_name(name, actor.subject)
        as_admin = domain.require_self_or_admin(user_id, actor.subject, actor.roles)
        user = await self._store.get_user(user_id)
        domain.check_password(new, field="new_password", username=user.username)
        own = actor.subject == user.name
        if own or not as_admin:
            ok = await asyncio.to_thread(self._passwords.verify, user.password_hash, current)
            if not ok:
                await self.audit(actor, "user.password", target=user.name, outcome="failure",
                                 reason="bad current password")
                raise PermissionDenied("current password does not match",
                                       reason="INVALID_CREDENTIALS")
        hashed = await asyncio.to_thread(self._passwords.hash, new)
        async with self._store.transaction() as conn:
            await self._store.set_password(conn, user_id, hashed)
            # Sessions opened with the old password end with it.
            revoked = await self._store.revoke_user_tokens(conn, user_id, self._clock())
            await self.audit(actor, "user.password", target=user.name, conn=conn,
                             revoked_refresh_tokens=revoked)

    # ------------------------------------------------------------------ API keys
    async def create_api_key(self, actor: Actor, parent: str, *, display_name: str,
                             roles: Iterable[str], expire_time: datetime | None,
                             request_id: str) -> tuple[ApiKeyRecord, str]:
        user_id = domain.user_id_from_name(parent, actor.subject, field="parent")
        domain.require_self_or_admin(user_id, actor.subject, actor.roles)
        if not display_name:
            raise InvalidArgument.for_field("api_key.display_name", "a name", display_name)
        now = self._clock()
        if expire_time is None or not now < expire_time <= now + self.policy.api_key_max:
            raise InvalidArgument.for_field(
                "api_key.expire_time",
                f"a time in the next {self.policy.api_key_max.days} days", expire_time)
        async with self._store.transaction() as conn:
            if request_id:
                seen = await self._store.find_request(conn, request_id, now)
                if seen is not None:
                    return await self._replay_key(conn, seen, actor)
            owner = await self._store.get_user(user_id, conn=conn)
            granted = domain.key_roles(roles, owner.roles)
            secret, prefix = domain.new_api_key()
            key = await self._store.insert_api_key(conn, ApiKeyRecord(
                id=domain.new_id(), user_id=user_id, display_name=display_name, prefix=prefix,
                roles=granted, expire_time=expire_time), domain.hash_secret(secret))
            if request_id:
                await self._store.remember_request(
                    conn, request_id, method="CreateApiKey", owner=actor.subject,
                    resource=key.name, secret_enc=self._box.encrypt(secret.encode()).decode(),
                    expire_time=now + REQUEST_TTL)
            await self.audit(actor, "api_key.create", target=key.name, conn=conn,
                             roles=list(granted), expire_time=expire_time.isoformat())
            return key, secret

    async def _replay_key(self, conn: Any, seen: Any, actor: Actor) -> tuple[ApiKeyRecord, str]:
        if seen["method"] != "CreateApiKey" or seen["owner"] != actor.subject:
            raise FailedPrecondition([("REQUEST_ID", "request_id",
                                       "already used by another request")],
                                     reason="REQUEST_ID_REUSED")
        _, user_id, _, key_id = seen["resource"].split("/")
        key = await self._store.get_api_key(user_id, key_id, conn=conn)
        if seen["secret_enc"] is None:
            raise FailedPrecondition([("REQUEST_ID", key.name, "the secret is no longer "
                                       "retrievable; create another key")],
                                     reason="SECRET_EXPIRED")
        try:
            secret = self._box.decrypt(seen["secret_enc"].encode()).decode()
        except InvalidToken as exc:
            raise FailedPrecondition([("REQUEST_ID", key.name, "secret unreadable")]) from exc
        return key, secret

    async def list_api_keys(self, actor: Actor, parent: str, page_size: int,
                            page_token: str) -> Page:
        user_id = domain.user_id_from_name(parent, actor.subject, field="parent")
        domain.require_self_or_admin(user_id, actor.subject, actor.roles)
        size = paging.page_size(page_size)
        filters = {"user": user_id}
        after = paging.decode_token(page_token, filters)
        rows = await self._store.list_api_keys(
            user_id, limit=size + 1,
            after=(datetime.fromisoformat(after[0]), after[1]) if after else None)
        return _page(rows, size, lambda k: [k.create_time.isoformat(), k.id], filters)

    async def revoke_api_key(self, actor: Actor, name: str) -> ApiKeyRecord:
        parts = name.split("/")
        if len(parts) != 4 or parts[0] != "users" or parts[2] != "apiKeys" or not parts[3]:
            raise InvalidArgument.for_field("name", "'users/{user}/apiKeys/{api_key}'", name)
        user_id = domain.user_id_from_name("/".join(parts[:2]), actor.subject)
        # The owner is the user in the key's name (the row is looked up by it), so it is
        # checked before the read: a non-owner learns nothing about which keys exist.
        require_owner(f"users/{user_id}", resource=f"users/{user_id}/apiKeys/{parts[3]}")
        async with self._store.transaction() as conn:
            key = await self._store.get_api_key(user_id, parts[3], conn=conn)
            await self._store.revoke_api_key(conn, user_id, key.id, self._clock())
            await self.audit(actor, "api_key.revoke", target=key.name, conn=conn)
            return await self._store.get_api_key(user_id, key.id, conn=conn)

    # ------------------------------------------------------------------ audit log
    async def list_audit_events(self, *, page_size: int, page_token: str, action: str,
                                actor: str, start: datetime | None,
                                end: datetime | None) -> Page:
        size = paging.page_size(page_size, default=100)
        if start is not None and end is not None and end <= start:
            raise InvalidArgument.for_field("end_time", "a time after start_time",
                                            end.isoformat())
        filters = {"action": action, "actor": actor, "start": start, "end": end}
        after = paging.decode_token(page_token, filters)
        rows = await self._store.list_audit(
            limit=size + 1, action=action, actor=actor, start=start, end=end,
            after=(datetime.fromisoformat(after[0]), int(after[1])) if after else None)
        return _page(rows, size, lambda e: [e.time.isoformat(), e.id], filters)


def _page(rows: list[Any], size: int, key: Any, filters: dict[str, Any]) -> Page:
    if len(rows) <= size:
        return Page(rows, "")
    items = rows[:size]
    return Page(items, paging.encode_token(key(items[-1]), filters))


__all__ = ["Actor", "IdentityApp", "Page", "TokenPolicy", "expected"]
