"""Build StrategyService requests from plain Python values (shared by both clients)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from usdcarb_sdk._gen.usdcarb import v1

__all__ = [
    "ParametersLike",
    "create_strategy_request",
    "create_version_request",
    "parse_kind",
    "strategy_name",
    "strategy_parameters",
    "version_name",
]

ParametersLike = (
    v1.StrategyParameters
    | v1.CrossExchangeSpreadParams
    | v1.PegReversionParams
    | v1.TriangularParams
    | Mapping[str, Any]
)


def parse_kind(kind: v1.StrategyKind | int | str) -> v1.StrategyKind:
    """Return the StrategyKind for an enum, number or name.

    Names may be the proto name ("STRATEGY_KIND_PEG_REVERSION"), the Python member name
    ("PEG_REVERSION") or the resource id ("peg-reversion").
    """
    if isinstance(kind, str):
        key = kind.strip().upper().replace("-", "_").removeprefix("STRATEGY_KIND_")
        try:
            return v1.StrategyKind[key]
        except KeyError:
            names = [k.name for k in v1.StrategyKind if k.value]
            raise ValueError(f"expected a strategy kind in {names}, got {kind!r}") from None
    return v1.StrategyKind(kind)


def strategy_name(strategy: str) -> str:
    """Return "strategies/{id}" for a strategy id or name."""
    return strategy if strategy.startswith("strategies/") else f"strategies/{strategy}"


def version_name(strategy: str, version: str) -> str:
    """Return "strategies/{id}/versions/{version}"."""
    return f"{strategy_name(strategy)}/versions/{version}"


def strategy_parameters(parameters: ParametersLike) -> v1.StrategyParameters:
    """Return StrategyParameters for a message or a proto-JSON style dict.

    A dict is keyed by the kind, e.g. ``{"crossExchangeSpread": {"entryBps": 15, ...}}``
    (camelCase or snake_case keys).
    """
    if isinstance(parameters, v1.StrategyParameters):
        return parameters
    if isinstance(parameters, v1.CrossExchangeSpreadParams):
        return v1.StrategyParameters(cross_exchange_spread=parameters)
    if isinstance(parameters, v1.PegReversionParams):
        return v1.StrategyParameters(peg_reversion=parameters)
    if isinstance(parameters, v1.TriangularParams):
        return v1.StrategyParameters(triangular=parameters)
    if isinstance(parameters, Mapping):
        return v1.StrategyParameters.from_dict(parameters)
    raise TypeError(f"expected StrategyParameters, a kind's parameters or a dict, "
                    f"got {type(parameters).__name__}")


def create_strategy_request(
    *,
    display_name: str,
    kind: v1.StrategyKind | int | str,
    strategy_id: str = "",
    description: str = "",
    labels: Mapping[str, str] | None = None,
    request_id: str | None = None,
) -> v1.CreateStrategyRequest:
    """Return a CreateStrategyRequest; a fresh request id makes it safe to retry."""
    return v1.CreateStrategyRequest(
        strategy=v1.Strategy(display_name=display_name, kind=parse_kind(kind),
                             description=description, labels=dict(labels or {})),
        strategy_id=strategy_id,
        request_id=uuid.uuid4().hex if request_id is None else request_id,
    )


def create_version_request(
    parent: str, parameters: ParametersLike, *, description: str = ""
) -> v1.CreateStrategyVersionRequest:
    """Return a CreateStrategyVersionRequest for a strategy id or name."""
    return v1.CreateStrategyVersionRequest(
        parent=strategy_name(parent),
        version=v1.StrategyVersion(parameters=strategy_parameters(parameters),
                                   description=description),
    )
