"""The limits file (``limits.yaml``): its model, and the two configs made from it.

Pure: standard library and PyYAML. One file says every budget; it becomes

- Envoy's ``local_ratelimit`` descriptors (``api``: a token bucket per subject and role
  tier, inside each gateway process, no call anywhere; see ``usdcarb.gateway.envoy``);
- the YAML of Envoy's reference rate limit service, ``envoyproxy/ratelimit``, for the
  shared budgets counted in Redis (``heavy`` per subject and tier, ``auth`` per client
  IP), which that service reloads from its runtime directory when the file changes.

The gateway sends the rate limit service these descriptors (entries in this order):

- ``class=heavy, tier=<tier>, sub=<subject>``: RunBacktest, CreateBacktest, CreateSweep;
- ``class=auth, remote_address=<client ip>``: Login, RefreshToken, ExchangeApiKey.

A tier is the caller's highest role (viewer < analyst < trader < admin), or ``default``
for a token without a known role; a tier without its own limit gets the default one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "DEFAULT_LIMITS_FILE",
    "DOMAIN",
    "NO_ROLE",
    "ROLE_RANK",
    "TIERS",
    "UNITS",
    "ConfigError",
    "Limit",
    "Limits",
    "load_limits",
    "parse_limits",
    "service_config",
    "tier_limits",
]

DEFAULT_LIMITS_FILE = Path(__file__).with_name("limits.yaml")
DOMAIN = "usdcarb"
UNITS: Mapping[str, int] = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
ROLE_RANK: Mapping[str, int] = {"viewer": 1, "analyst": 2, "trader": 3, "admin": 4}
NO_ROLE = "default"
TIERS = (NO_ROLE, *ROLE_RANK)


@dataclass(frozen=True, slots=True)
class Limit:
    """``requests_per_unit`` requests per ``unit`` ("second", "minute", "hour", "day").

    ``name`` (e.g. ``heavy-analyst``) shows in ``x-ratelimit-limit`` and in the 429's
    details: keep it plain.
    """

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


class ConfigError(ValueError):
    """Report a malformed limits file, naming the field."""


def _limit(raw: Any, name: str) -> Limit:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{name}: expected a mapping, got {raw!r}")
    unknown = sorted(set(raw) - {"requests_per_unit", "unit"})
    if unknown:
        raise ConfigError(f"{name}: expected requests_per_unit and unit, got also {unknown}")
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
    unknown = sorted(set(raw) - set(TIERS))
    if unknown:
        raise ConfigError(f"{name}: expected roles {sorted(ROLE_RANK)} or {NO_ROLE}, got {unknown}")
    return {str(role): _limit(limit, f"{name}-{role}") for role, limit in raw.items()}


def parse_limits(raw: Any) -> Limits:
    """Build Limits from the parsed YAML document; raise ConfigError if malformed."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"expected a mapping at the top of the limits file, got {raw!r}")
    unknown = sorted(set(raw) - {"api", "heavy", "auth"})
    if unknown:
        raise ConfigError(f"expected the sections api, heavy and auth, got also {unknown}")
    auth = raw.get("auth")
    return Limits(api=_tiers(raw.get("api"), "api"), heavy=_tiers(raw.get("heavy"), "heavy"),
                  auth=None if auth is None else _limit(auth, "auth"))


def load_limits(path: Path = DEFAULT_LIMITS_FILE) -> Limits:
    """Read and parse a limits file; raise ConfigError (or OSError) if it cannot be used."""
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: expected YAML, got {exc}") from exc
    return parse_limits(document)


def tier_limits(tiers: Mapping[str, Limit]) -> dict[str, Limit]:
    """Return the limit of every tier: its own, else the default one (tiers with neither
    are unlimited and left out)."""
    fallback = tiers.get(NO_ROLE)
    out = {tier: tiers.get(tier) or fallback for tier in TIERS}
    return {tier: limit for tier, limit in out.items() if limit is not None}


def _rate_limit(limit: Limit) -> dict[str, Any]:
    return {"unit": limit.unit, "requests_per_unit": limit.requests_per_unit,
            "name": limit.name}


def service_config(limits: Limits) -> dict[str, Any]:
    """Return the envoyproxy/ratelimit config (domain ``usdcarb``) for the shared budgets.

    ``sub`` and ``remote_address`` have no value: each distinct subject (client IP) gets a
    counter of its own.
    """
    descriptors: list[dict[str, Any]] = []
    heavy = tier_limits(limits.heavy)
    if heavy:
        descriptors.append({"key": "class", "value": "heavy", "descriptors": [
            {"key": "tier", "value": tier, "descriptors": [
                {"key": "sub", "rate_limit": _rate_limit(limit)}]}
            for tier, limit in heavy.items()]})
    if limits.auth is not None:
        descriptors.append({"key": "class", "value": "auth", "descriptors": [
            {"key": "remote_address", "rate_limit": _rate_limit(limits.auth)}]})
    return {"domain": DOMAIN, "descriptors": descriptors}
