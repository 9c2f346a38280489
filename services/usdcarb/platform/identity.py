"""Tell who is calling: the caller a verified bearer token names.

Trust model (zero trust inside the mesh): every service verifies the caller's bearer
token itself (``usdcarb.platform.tokens``) in its identity interceptor, before any
handler runs; Envoy's forwarded claims header is never trusted. ``Caller`` is what a
verified token says; ``get_caller()`` returns the caller of the current RPC.

Subjects: people are ``users/<id>``; services calling each other carry a short-lived
token identity issues to them, whose subject is ``service:<name>``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from usdcarb.platform.errors import PermissionDenied, Unauthenticated

SERVICE_PREFIX = "service:"


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

    @property
    def service(self) -> str:
        """Return the service name of a ``service:<name>`` principal, "" for people."""
        return self.subject[len(SERVICE_PREFIX):] if self.subject.startswith(SERVICE_PREFIX) else ""

    @property
    def is_admin(self) -> bool:
        """Return whether the caller holds the admin role."""
        return "admin" in self.roles

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


def caller_from_claims(claims: Mapping[str, Any]) -> Caller:
    """Return the Caller named by the claims of a verified token."""
    subject = claims.get("sub")
    return Caller(
        subject=subject if isinstance(subject, str) else "",
        roles=_strings(claims.get("roles")),
        scopes=_strings(claims.get("scope")) | _strings(claims.get("scp")),
        token_id=str(claims.get("jti", "")),
        claims=MappingProxyType(dict(claims)),
    )


def get_caller() -> Caller:
    """Return the caller the identity interceptor stored for the current RPC."""
    return current_caller.get()
