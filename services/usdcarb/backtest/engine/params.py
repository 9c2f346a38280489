"""Strategy kinds as the engine sees them: parameter validation, markets, kernel vectors.

Parameters arrive exactly as the strategy service stores them (proto3 JSON, camelCase),
either as the kind's own object or wrapped in its key (``{"crossExchangeSpread": {...}}``).
They are validated with the strategy service's schemas (one source of truth).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from usdcarb.platform.errors import InvalidArgument
from usdcarb.strategy.domain import canonicalize
from usdcarb.strategy.kinds import BY_SLUG, KindSpec

from .model import F64

KIND_SPREAD, KIND_PEG, KIND_TRI = 0, 1, 2
KIND_CODES = {"cross-exchange-spread": KIND_SPREAD, "peg-reversion": KIND_PEG,
              "triangular": KIND_TRI}

# Kernel parameter vector (float64[NPARAM]); triangular reuses the slots as noted.
P_ENTRY, P_EXIT, P_QTY, P_HOLD, P_PEG, P_STOP = range(6)   # tri: min edge, -, notional, cooldown
NPARAM = 6

# Numeric parameters a sweep may vary, per kind.
SWEEPABLE = {
    "cross-exchange-spread": ("entryBps", "exitBps", "quantity", "maxHoldingBars"),
    "peg-reversion": ("peg", "entryBps", "exitBps", "quantity", "stopLossBps",
                      "maxHoldingBars"),
    "triangular": ("minEdgeBps", "notional", "cooldownBars"),
}


class ParameterError(ValueError):
    """Parameters outside the kind's schema; ``violations`` lists (field, "expected X, got Y")."""

    def __init__(self, message: str, violations: Sequence[tuple[str, str]]) -> None:
        super().__init__(message)
        self.violations = list(violations)


def kind_spec(kind: str) -> KindSpec:
    """Return the spec of a kind slug; ValueError naming the known slugs otherwise."""
    spec = BY_SLUG.get(kind)
    if spec is None:
        raise ParameterError(f"expected a strategy kind in {sorted(BY_SLUG)}, got {kind!r}",
                             [("kind", f"expected one of {sorted(BY_SLUG)}, got {kind!r}")])
    return spec


def normalized(kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``params`` of ``kind`` and return them with schema defaults applied."""
    spec = kind_spec(kind)
    inner = params[spec.param_key] if set(params) == {spec.param_key} else params
    try:
        canon = canonicalize({spec.param_key: dict(inner)}, kind=spec, field="parameters")
    except InvalidArgument as exc:
        violations = [(v.field, v.description) for v in exc.field_violations]
        raise ParameterError(
            "; ".join(f"{f}: {d}" for f, d in violations), violations) from exc
    values: dict[str, Any] = canon.parameters[spec.param_key]
    return values


def validate_params(kind: str, params: Mapping[str, Any]) -> None:
    """Raise ValueError ("expected X, got Y") when ``params`` break the kind's schema."""
    normalized(kind, params)


def required_series(kind: str, params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Return the (venue, symbol) markets the strategy trades, in leg order."""
    return series_of(kind, normalized(kind, params))


def series_of(kind: str, p: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``required_series`` of parameters that ``normalized`` has already checked."""
    if kind == "cross-exchange-spread":
        return [(p["venueA"], p["symbol"]), (p["venueB"], p["symbol"])]
    if kind == "peg-reversion":
        return [(p["venue"], p["symbol"])]
    return [(p["venue"], s) for s in p["symbols"]]


def pricing_symbols(kind: str, params: Mapping[str, Any], quote_asset: str,
                    extra_assets: Sequence[str] = ()) -> list[str]:
    """Return the ``ASSET/QUOTE`` markets that price the strategy's other assets.

    Equity is reported in ``quote_asset``; an asset of the traded markets (or one of
    ``extra_assets``, e.g. what transfers move) other than it is priced by ``ASSET/QUOTE``
    (or ``QUOTE/ASSET``) when the frame holds it (on the strategy's venue by preference).
    A caller that loads market data loads these too; the traded markets themselves often
    already price everything.
    """
    traded = [s for _, s in required_series(kind, params)]
    assets = dict.fromkeys([*(a for s in traded for a in s.split("/")), *extra_assets])
    return [f"{a}/{quote_asset}" for a in assets if a != quote_asset
            and f"{a}/{quote_asset}" not in traded and f"{quote_asset}/{a}" not in traded]


def param_vector(kind: str, p: Mapping[str, Any]) -> F64:
    """Return the kernel's float64 parameter vector of normalized parameters ``p``.

    Thresholds are computed exactly as ``bps / 1e4`` (spread-arb-v1's expressions), since
    other expressions can flip exact-threshold cases.
    """
    v = np.zeros(NPARAM)
    if kind == "triangular":
        v[P_ENTRY] = float(p["minEdgeBps"]) / 1e4
        v[P_QTY] = float(p["notional"])
        v[P_HOLD] = float(p.get("cooldownBars", 0))
        return v
    v[P_ENTRY] = float(p["entryBps"]) / 1e4
    v[P_EXIT] = float(p["exitBps"]) / 1e4
    v[P_QTY] = float(p["quantity"])
    v[P_HOLD] = float(p.get("maxHoldingBars", 0))
    if kind == "peg-reversion":
        v[P_PEG] = float(p.get("peg") or 1.0)
        v[P_STOP] = float(p.get("stopLossBps", 0)) / 1e4
    return v


def axis_key(kind: str, path: str) -> str:
    """Resolve an axis path ("entryBps" or "crossExchangeSpread.entryBps") to a parameter."""
    spec = kind_spec(kind)
    name = path.removeprefix(spec.param_key + ".")
    if name not in SWEEPABLE[kind]:
        raise ParameterError(
            f"expected a sweep axis in {list(SWEEPABLE[kind])}, got {path!r}",
            [(f"axes.{path}", f"expected one of {list(SWEEPABLE[kind])}, got {path!r}")])
    return name


def with_values(kind: str, base: Mapping[str, Any], values: Mapping[str, float]) -> dict[str, Any]:
    """Return ``base`` (normalized) with the parameters ``values`` replaced."""
    spec = kind_spec(kind)
    inner = dict(base[spec.param_key] if set(base) == {spec.param_key} else base)
    for key, value in values.items():
        prop = spec.schema["properties"][key]
        if prop.get("type") == "integer":
            if float(value) != int(value):
                raise ParameterError(f"parameters.{key}: expected an integer, got {value!r}",
                                     [(f"parameters.{key}", f"expected an integer, got {value!r}")])
            inner[key] = int(value)
        else:
            inner[key] = float(value)
    return normalized(kind, inner)
