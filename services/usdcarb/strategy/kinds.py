"""Strategy kinds and the JSON Schemas their parameters must satisfy.

Parameters travel as the proto3 JSON form of ``usdcarb.v1.StrategyParameters``: one
camelCase key naming the kind (``crossExchangeSpread``) holding that kind's fields.
The schemas add what protobuf cannot say: bounds, patterns and defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SYMBOL = {"type": "string", "pattern": r"^[A-Z0-9]{2,12}/[A-Z0-9]{2,12}$"}
VENUE = {"type": "string", "pattern": r"^[a-z][a-z0-9]{1,31}$"}
BPS = {"type": "number", "exclusiveMinimum": 0, "maximum": 10_000}


@dataclass(frozen=True, kw_only=True)
class KindSpec:
    """One strategy kind: its enum name, URL slug, parameter key and schema."""

    enum_name: str
    slug: str
    param_key: str
    display_name: str
    description: str
    schema: dict[str, Any]

    @property
    def resource_name(self) -> str:
        return f"strategyKinds/{self.slug}"


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


CROSS_EXCHANGE_SPREAD = KindSpec(
    enum_name="STRATEGY_KIND_CROSS_EXCHANGE_SPREAD",
    slug="cross-exchange-spread",
    param_key="crossExchangeSpread",
    display_name="Cross-exchange spread",
    description=(
        "Trades the same market on two venues. The spread is (B - A) / A; above entryBps "
        "it buys A and sells B, below -entryBps the reverse, and it closes both legs when "
        "|spread| falls under exitBps. No flips: an opposite signal while in a position "
        "is ignored."
    ),
    schema=_object(
        {
            "symbol": SYMBOL,
            "venueA": VENUE,
            "venueB": VENUE,
            "entryBps": BPS,
            "exitBps": {"type": "number", "minimum": 0, "maximum": 10_000},
            "quantity": {"type": "number", "exclusiveMinimum": 0, "maximum": 1e12},
            "maxHoldingBars": {"type": "integer", "minimum": 0, "default": 0,
                               "description": "0 means no limit"},
        },
        ["symbol", "venueA", "venueB", "entryBps", "exitBps", "quantity"],
    ),
)

PEG_REVERSION = KindSpec(
    enum_name="STRATEGY_KIND_PEG_REVERSION",
    slug="peg-reversion",
    param_key="pegReversion",
    display_name="Stablecoin peg reversion",
    description=(
        "Buys a stablecoin pair when it trades entryBps below its peg and sells it when "
        "entryBps above, closing when the price is back within exitBps of the peg, at a "
        "stop loss, or after maxHoldingBars."
    ),
    schema=_object(
        {
            "venue": VENUE,
            "symbol": SYMBOL,
            "peg": {"type": "number", "exclusiveMinimum": 0, "maximum": 10, "default": 1.0,
                    "description": "0 means the default, 1.0"},
            "entryBps": BPS,
            "exitBps": {"type": "number", "minimum": 0, "maximum": 10_000},
            "quantity": {"type": "number", "exclusiveMinimum": 0, "maximum": 1e12},
            "stopLossBps": {"type": "number", "minimum": 0, "maximum": 10_000, "default": 0,
                            "description": "0 means no stop"},
            "maxHoldingBars": {"type": "integer", "minimum": 0, "default": 0,
                               "description": "0 means no limit"},
        },
        ["venue", "symbol", "entryBps", "exitBps", "quantity"],
    ),
)

TRIANGULAR = KindSpec(
    enum_name="STRATEGY_KIND_TRIANGULAR",
    slug="triangular",
    param_key="triangular",
    display_name="Triangular loop",
    description=(
        "Trades a loop through three markets on one venue (e.g. BTC/USDC, BTC/USDT, "
        "USDC/USDT) when the loop's edge after fees exceeds minEdgeBps."
    ),
    schema=_object(
        {
            "venue": VENUE,
            "symbols": {"type": "array", "items": SYMBOL, "minItems": 3, "maxItems": 3,
                        "uniqueItems": True},
            "minEdgeBps": {"type": "number", "minimum": 0, "maximum": 10_000},
            "notional": {"type": "number", "exclusiveMinimum": 0, "maximum": 1e12},
            "cooldownBars": {"type": "integer", "minimum": 0, "default": 0},
        },
        ["venue", "symbols", "minEdgeBps", "notional"],
    ),
)

KINDS: tuple[KindSpec, ...] = (CROSS_EXCHANGE_SPREAD, PEG_REVERSION, TRIANGULAR)
BY_ENUM = {k.enum_name: k for k in KINDS}
BY_SLUG = {k.slug: k for k in KINDS}
BY_PARAM_KEY = {k.param_key: k for k in KINDS}
