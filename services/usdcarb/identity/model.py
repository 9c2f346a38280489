"""Records of the identity service, as the application and the store exchange them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, kw_only=True)
class UserRecord:
    """A user row with its roles (never leaves the service with its password hash)."""

    id: str
    username: str
    display_name: str = ""
    email: str = ""
    password_hash: str = ""
    disabled: bool = False
    failed_logins: int = 0
    locked_until: datetime | None = None
    create_time: datetime | None = None
    last_login_time: datetime | None = None
    roles: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"users/{self.id}"


@dataclass(frozen=True, kw_only=True)
class ApiKeyRecord:
    """An API key row (its secret is stored only hashed)."""

    id: str
    user_id: str
    display_name: str
    prefix: str
    roles: tuple[str, ...]
    expire_time: datetime
    revoke_time: datetime | None = None
    create_time: datetime | None = None
    last_used_time: datetime | None = None

    @property
    def name(self) -> str:
        return f"users/{self.user_id}/apiKeys/{self.id}"

    @property
    def owner(self) -> str:
        """The subject the key belongs to: the user it acts as, whoever created it."""
        return f"users/{self.user_id}"


@dataclass(frozen=True, kw_only=True)
class RefreshRecord:
    """A refresh token row."""

    id: str
    family_id: str
    user_id: str
    expire_time: datetime
    use_time: datetime | None = None
    revoke_time: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class SigningKeyRecord:
    """A signing key row: the private half encrypted, the public half as a JWK."""

    kid: str
    private_pem: str
    public_jwk: dict[str, str]
    activate_time: datetime
    retire_time: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class AuditRecord:
    """One audit event."""

    id: int = 0
    time: datetime | None = None
    actor: str = ""
    action: str
    target: str = ""
    outcome: str = "success"
    client_ip: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def denied_call(cls, *, subject: str, roles: Iterable[str], client_ip: str, method: str,
                    service: str, time: datetime | None = None) -> AuditRecord:
        """The event of a call the role table refused, in whichever service."""
        return cls(time=time, actor=subject, action="call.denied", target=method,
                   outcome="failure", client_ip=client_ip,
                   details={"roles": sorted(roles), "service": service})


@dataclass(frozen=True, kw_only=True)
class TokenPair:
    """What Login, RefreshToken and ExchangeApiKey return."""

    access_token: str
    expires_in: int
    refresh_token: str = ""
    refresh_expires_in: int = 0
