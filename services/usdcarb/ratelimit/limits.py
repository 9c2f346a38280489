"""Rate limits: the configuration file's model and which counters a request touches.

Pure: standard library only. The gateway sends one descriptor per budget (see
``usdcarb.gateway.envoy``), each a list of (key, value) entries:

- ``class=api, sub=<subject>[, roles=<x-jwt-roles>]``: every authenticated call, limited
  per subject by the tier of its highest role;
- ``class=heavy, sub=..., roles=...``: RunBacktest/CreateBacktest/CreateSweep, a separate
  budget on top of the api one;
- ``class=auth, remote_address=<client ip>``: Login/RefreshToken/ExchangeApiKey per IP.

Unknown descriptors are not limited. Windows are fixed and aligned to the unit.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

UNITS: Mapping[str, int] = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
ROLE_RANK = {"viewer": 0, "analyst": 1, "trader": 2, "admin": 3}
NO_ROLE = "default"
KEY_PREFIX = "rl"


@dataclass(frozen=True, slots=True)
class Limit:
    """``requests_per_unit`` requests per ``unit`` ("second", "minute", "hour", "day")."""

    requests_per_unit: int
    unit: str
    name: str

    @property
    def seconds(self) -> int:
        return UNITS[self.unit]


@dataclass(frozen=True, slots=True)
class Limits:
    """The whole configuration: api and heavy tiers by role, and the per-IP auth limit."""

    api: Mapping[str, Limit]
    heavy: Mapping[str, Limit]
    auth: Limit | None


@dataclass(frozen=True, slots=True)
class Check:
    """One counter a request increments: Redis key, its limit and the window's end."""

    key: str
    limit: Limit
    reset_in: int  # seconds until the window ends
    ttl: int  # seconds the counter lives (window + slack)


class ConfigError(ValueError):
    """Report a malformed limits file (the previous configuration stays in force)."""


def _limit(raw: Any, name: str) -> Limit:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{name}: expected a mapping, got {raw!r}")
    rpu, unit = raw.get("requests_per_unit"), raw.get("unit")
    if not isinstance(rpu, int) or isinstance(rpu, bool) or rpu < 0:
        raise ConfigError(f"{name}.requests_per_unit: expected an integer >= 0, got {rpu!r}")
    if unit not in UNITS:
        raise ConfigError(f"{name}.unit: expected one of {sorted(UNITS)}, got {unit!r}")
    return Limit(rpu, str(unit), name)


def _tiers(raw: Any, name: str) -> dict[str, Limit]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{name}: expected a mapping of role to limit, got {raw!r}")
    unknown = sorted(set(raw) - set(ROLE_RANK) - {NO_ROLE})
    if unknown:
        raise ConfigError(f"{name}: expected roles {sorted(ROLE_RANK)} or {NO_ROLE}, got {unknown}")
    return {str(role): _limit(limit, f"{name}-{role}") for role, limit in raw.items()}


def parse_limits(raw: Any) -> Limits:
    """Build Limits from the parsed YAML document; raise ConfigError if malformed."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"expected a mapping at the top of the limits file, got {raw!r}")
    auth = raw.get("auth")
    return Limits(api=_tiers(raw.get("api"), "api"), heavy=_tiers(raw.get("heavy"), "heavy"),
                  auth=None if auth is None else _limit(auth, "auth"))


@lru_cache(maxsize=4096)
def highest_role(roles_header: str) -> str:
    """Return the highest role in an ``x-jwt-roles`` value (base64 of a JSON list)."""
    try:
        roles = json.loads(base64.b64decode(roles_header + "=" * (-len(roles_header) % 4)))
    except (binascii.Error, ValueError):
        return NO_ROLE
    if not isinstance(roles, list):
        return NO_ROLE
    known = [r for r in roles if isinstance(r, str) and r in ROLE_RANK]
    return max(known, key=ROLE_RANK.__getitem__) if known else NO_ROLE


def _tier(tiers: Mapping[str, Limit], role: str) -> Limit | None:
    return tiers.get(role) or tiers.get(NO_ROLE)


def check_for(entries: Sequence[tuple[str, str]], limits: Limits, now: float) -> Check | None:
    """Return the counter one descriptor increments, or None when nothing limits it."""
    fields = dict(entries)
    kind = fields.get("class")
    limit: Limit | None = None
    who = ""
    if kind in ("api", "heavy") and fields.get("sub"):
        tiers = limits.api if kind == "api" else limits.heavy
        limit = _tier(tiers, highest_role(fields.get("roles", "")))
        who = fields["sub"]
    elif kind == "auth" and fields.get("remote_address"):
        limit = limits.auth
        who = fields["remote_address"]
    if limit is None:
        return None
    unit = limit.seconds
    window = int(now // unit)
    reset_in = max(1, int((window + 1) * unit - now + 0.999))
    # The limit's name is part of the key, so a tier change starts a fresh counter.
    return Check(key=f"{KEY_PREFIX}:{kind}:{limit.name}:{who}:{window}", limit=limit,
                 reset_in=reset_in, ttl=unit + 1)
