"""Tell who is calling, from the claims Envoy verified.

Trust model: Envoy's jwt_authn filter verifies the bearer token (signature, issuer,
audience, expiry) and forwards its payload in ``x-jwt-payload`` (base64url JSON,
unpadded). Envoy overwrites any ``x-jwt-*`` header a client sends, and services are
reachable only through Envoy (or the Istio mesh, whose AuthorizationPolicy admits
only the gateway), so this header is the one source of identity a service trusts.
Services never verify JWTs themselves and never read ``authorization``.
No header means an anonymous caller; a malformed one is refused (fail closed).
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from usdcarb.platform.errors import PermissionDenied, Unauthenticated

PAYLOAD_HEADER = "x-jwt-payload"


@dataclass(frozen=True, slots=True)
class Caller:
    """Identify the caller of one RPC: subject, roles, scopes, token id, all claims.

    Roles come from the ``roles`` claim, scopes from ``scope`` (space-separated, RFC
    9068) or ``scp`` (list), the token id from ``jti``.
    """

    subject: str = ""
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    token_id: str = ""
    claims: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def authenticated(self) -> bool:
        """Return whether a verified token named this caller."""
        return bool(self.subject)

    def require(self, *, role: str | None = None, scope: str | None = None) -> None:
        """Raise Unauthenticated if anonymous, PermissionDenied if a role/scope is missing."""
        if not self.authenticated:
            raise Unauthenticated()
        if role is not None and role not in self.roles:
            raise PermissionDenied(
                f"expected role {role!r}, got roles {sorted(self.roles)}", permission=role
            )
        if scope is not None and scope not in self.scopes:
            raise PermissionDenied(
                f"expected scope {scope!r}, got scopes {sorted(self.scopes)}", permission=scope
            )


ANONYMOUS = Caller()

current_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar(
    "current_caller", default=ANONYMOUS
)


def _strings(value: object) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(item for item in value if isinstance(item, str))
    return frozenset()


def parse_payload(value: str | bytes) -> Caller:
    """Decode an ``x-jwt-payload`` value (base64url JSON, padding optional) into a Caller."""
    raw = value.encode("ascii", "replace") if isinstance(value, str) else value
    raw = raw.strip()
    try:
        claims = json.loads(base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise Unauthenticated("malformed identity header", reason="BAD_IDENTITY_HEADER") from exc
    if not isinstance(claims, dict):
        raise Unauthenticated("malformed identity header", reason="BAD_IDENTITY_HEADER")
    subject = claims.get("sub")
    return Caller(
        subject=subject if isinstance(subject, str) else "",
        roles=_strings(claims.get("roles")),
        scopes=_strings(claims.get("scope")) | _strings(claims.get("scp")),
        token_id=str(claims.get("jti", "")),
        claims=MappingProxyType(claims),
    )


def caller_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
    """Return the caller named by invocation metadata, or ANONYMOUS without the header."""
    values = [value for key, value in metadata or () if key.lower() == PAYLOAD_HEADER]
    if not values:
        return ANONYMOUS
    if len(values) > 1:
        # Envoy sets exactly one; several mean something upstream is not Envoy.
        raise Unauthenticated("duplicate identity header", reason="BAD_IDENTITY_HEADER")
    return parse_payload(values[0])


class _HasMetadata(Protocol):
    def invocation_metadata(self) -> Iterable[tuple[str, str | bytes]] | None: ...


def caller_from_context(context: _HasMetadata) -> Caller:
    """Return the caller of the RPC whose servicer context is ``context``."""
    return caller_from_metadata(context.invocation_metadata())


def get_caller() -> Caller:
    """Return the caller the identity interceptor stored for the current RPC."""
    return current_caller.get()
