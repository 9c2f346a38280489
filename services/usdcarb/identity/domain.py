"""Rules of the identity service: names, roles, passwords, lockout, tokens, key rotation.

Pure: standard library only (plus the platform's error classes and role table). No
crypto here — ``keys.py`` signs and hashes; this module decides *what* to sign, when
to lock a user out and which keys to publish.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from usdcarb.platform import authz
from usdcarb.platform.errors import InvalidArgument, PermissionDenied, expected

USERNAME = re.compile(r"^[a-z][a-z0-9._-]{2,62}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 hashes any length; this caps the work a caller can ask for
REFRESH_PREFIX = "rt_"
API_KEY_PREFIX = "uk_"


def check_username(username: str) -> str:
    """Return a valid username or raise InvalidArgument."""
    if not USERNAME.match(username):
        raise InvalidArgument.for_field(
            "user.username", "3-63 characters: a lowercase letter, then a-z 0-9 . _ -", username
        )
    return username


def check_password(password: str, *, field: str = "password", username: str = "") -> str:
    """Return an acceptable new password or raise InvalidArgument (never echoing it)."""
    if len(password) < MIN_PASSWORD:
        raise InvalidArgument([(field, f"expected at least {MIN_PASSWORD} characters, got "
                                       f"{len(password)}")])
    if len(password) > MAX_PASSWORD:
        raise InvalidArgument([(field, f"expected at most {MAX_PASSWORD} characters, got "
                                       f"{len(password)}")])
    if username and username.lower() in password.lower():
        raise InvalidArgument([(field, "expected a password not containing the username")])
    return password


def check_roles(roles: Iterable[str], *, field: str = "roles") -> tuple[str, ...]:
    """Return known roles sorted by rank (deduplicated) or raise InvalidArgument."""
    found = set(roles)
    unknown = sorted(found - set(authz.ROLES))
    if unknown:
        raise InvalidArgument.for_field(field, f"roles among {list(authz.ROLES)}", unknown)
    if not found:
        raise InvalidArgument.for_field(field, "at least one role", [])
    return tuple(sorted(found, key=authz.RANK.__getitem__))


def user_id_from_name(name: str, caller_subject: str, *, field: str = "name") -> str:
    """Resolve "users/{id}" or "users/me" to a user id."""
    parts = name.split("/")
    if len(parts) != 2 or parts[0] != "users" or not parts[1]:
        raise InvalidArgument.for_field(field, "a resource name 'users/{user}' or 'users/me'",
                                        name)
    if parts[1] == "me":
        return subject_user_id(caller_subject)
    return parts[1]


def subject_user_id(subject: str) -> str:
    """Return the user id of a token subject "users/{id}"."""
    if not subject.startswith("users/"):
        raise PermissionDenied(expected("a user subject 'users/{id}'", subject),
                               reason="NOT_A_USER")
    return subject.removeprefix("users/")


def require_self_or_admin(user_id: str, caller_subject: str, caller_roles: Iterable[str]) -> bool:
    """Return whether the caller acts as admin; raise unless acting on itself or admin."""
    if "admin" in set(caller_roles):
        return True
    if caller_subject != f"users/{user_id}":
        raise PermissionDenied(
            f"expected users/{user_id} or role admin, got {caller_subject!r}",
            permission="users.other", reason="NOT_OWNER",
        )
    return False


# ------------------------------------------------------------------ lockout


@dataclass(frozen=True, kw_only=True)
class LockoutPolicy:
    """After ``max_failures`` consecutive failures, lock for an exponentially growing time."""

    max_failures: int = 5
    base_lock: timedelta = timedelta(seconds=30)
    max_lock: timedelta = timedelta(minutes=15)

    def lock_for(self, failures: int) -> timedelta:
        """Return how long to lock after ``failures`` consecutive failures (0 below max)."""
        if failures < self.max_failures:
            return timedelta(0)
        doublings = min(failures - self.max_failures, 20)
        return min(self.base_lock * (1 << doublings), self.max_lock)

    def locked_until(self, failures: int, now: datetime) -> datetime | None:
        """Return when a lock after ``failures`` failures ends, or None for no lock."""
        span = self.lock_for(failures)
        return now + span if span else None


# ------------------------------------------------------------------ tokens


def new_id() -> str:
    """Return a random, URL-safe resource id."""
    return uuid.uuid4().hex


def hash_secret(secret: str) -> str:
    """Hash a high-entropy secret (refresh token, API key) for storage and lookup.

    These secrets carry 256 random bits, so a fast hash is safe (no guessing to slow
    down) and allows lookup by hash; passwords use argon2 instead.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def new_refresh_token() -> str:
    """Return a fresh refresh token secret."""
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


def new_api_key() -> tuple[str, str]:
    """Return (secret, prefix): the secret shown once and a short prefix to recognise it."""
    secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return secret, secret[: len(API_KEY_PREFIX) + 6]


def access_claims(
    *, subject: str, roles: Sequence[str], issuer: str, audience: str, now: datetime,
    ttl: timedelta, extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the claims of an access token (iss, aud, sub, iat, nbf, exp, jti, roles)."""
    issued = int(now.timestamp())
    return {
        "iss": issuer, "aud": audience, "sub": subject, "iat": issued, "nbf": issued,
        "exp": issued + int(ttl.total_seconds()), "jti": new_id(), "roles": list(roles),
        **(extra or {}),
    }


def key_roles(requested: Iterable[str], owner_roles: Iterable[str]) -> tuple[str, ...]:
    """Return the roles of a new API key: a non-empty subset of what its owner holds.

    Owner roles imply the ones below them (an admin may mint a viewer key).
    """
    roles = check_roles(requested, field="api_key.roles")
    held: set[str] = set()
    for role in owner_roles:
        if role in authz.RANK:
            held |= authz.implied_roles(role)
    beyond = sorted(set(roles) - held)
    if beyond:
        raise PermissionDenied(
            f"expected API key roles within the owner's {sorted(held)}, got {beyond}",
            permission="api_key.roles", reason="ROLE_NOT_HELD",
        )
    return roles


# ------------------------------------------------------------------ signing keys


@dataclass(frozen=True, kw_only=True)
class KeyState:
    """What rotation needs to know of a signing key."""

    kid: str
    activate_time: datetime
    retire_time: datetime | None


def signing_key(keys: Sequence[KeyState], now: datetime) -> KeyState | None:
    """Return the key to sign with: the newest one already active and not retired."""
    active = [k for k in keys if k.activate_time <= now
              and (k.retire_time is None or k.retire_time > now)]
    return max(active, key=lambda k: k.activate_time) if active else None


def published(keys: Sequence[KeyState], now: datetime) -> list[KeyState]:
    """Return the keys the JWKS lists: every key not yet retired, newest first.

    That is the current key and the previous one (still verifying tokens it signed),
    plus, during a rotation's lead time, the next key, published before it signs so
    that every gateway's cached JWKS knows it first.
    """
    live = [k for k in keys if k.retire_time is None or k.retire_time > now]
    return sorted(live, key=lambda k: k.activate_time, reverse=True)


def needs_rotation(keys: Sequence[KeyState], now: datetime, every: timedelta) -> bool:
    """Tell whether the newest key is older than ``every`` (or there is none)."""
    if not keys:
        return True
    newest = max(keys, key=lambda k: k.activate_time)
    return newest.activate_time + every <= now


@dataclass(frozen=True, kw_only=True)
class RotationPlan:
    """A new key's activation time and the retire times to set on older keys."""

    activate_time: datetime
    retire: dict[str, datetime]


def plan_rotation(
    keys: Sequence[KeyState], now: datetime, *, lead: timedelta, overlap: timedelta
) -> RotationPlan:
    """Plan a rotation: the new key signs after ``lead``; the current key keeps verifying
    ``overlap`` longer (the access-token lifetime plus clock skew). Older keys keep the
    retire time their own rotation gave them, so rapid rotations never cut short a
    token that is still valid.
    """
    activate = now + lead
    ordered = sorted(keys, key=lambda k: k.activate_time)
    successors = [k.activate_time for k in ordered[1:]] + [activate]
    retire = {
        key.kid: successor + overlap
        for key, successor in zip(ordered, successors, strict=False)
        if key.retire_time is None
    }
    return RotationPlan(activate_time=activate, retire=retire)
