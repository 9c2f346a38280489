"""Strategy rules as pure functions: validation, content addressing, diffs, lifecycle."""

from __future__ import annotations

from typing import Any

import pytest

from usdcarb.platform.errors import FailedPrecondition, InvalidArgument
from usdcarb.strategy import domain
from usdcarb.strategy.domain import VersionState
from usdcarb.strategy.kinds import CROSS_EXCHANGE_SPREAD, KINDS, PEG_REVERSION, TRIANGULAR

pytestmark = pytest.mark.unit

SPREAD: dict[str, Any] = {"symbol": "USDC/USDT", "venueA": "binance", "venueB": "kraken",
                          "entryBps": 15, "exitBps": 3, "quantity": 10000}


def fields(exc: InvalidArgument) -> dict[str, str]:
    return {v.field: v.description for v in exc.field_violations}


def test_same_parameters_give_same_version_whatever_the_number_spelling() -> None:
    a = domain.canonicalize({"crossExchangeSpread": SPREAD}, kind=CROSS_EXCHANGE_SPREAD)
    b = domain.canonicalize(
        {"crossExchangeSpread": {**SPREAD, "entryBps": 15.0, "maxHoldingBars": 0}},
        kind=CROSS_EXCHANGE_SPREAD,
    )
    reordered = dict(reversed(list(SPREAD.items())))
    c = domain.canonicalize({"crossExchangeSpread": reordered}, kind=CROSS_EXCHANGE_SPREAD)
    assert a.content_hash == b.content_hash == c.content_hash
    assert a.version_id == a.content_hash[:16]
    assert '"entryBps":15.0' in a.canonical_json


def test_any_parameter_change_changes_the_version() -> None:
    a = domain.canonicalize({"crossExchangeSpread": SPREAD}, kind=CROSS_EXCHANGE_SPREAD)
    b = domain.canonicalize(
        {"crossExchangeSpread": {**SPREAD, "exitBps": 2.5}}, kind=CROSS_EXCHANGE_SPREAD
    )
    assert a.version_id != b.version_id


def test_zero_means_default_where_the_schema_has_one() -> None:
    base = {"venue": "kraken", "symbol": "USDC/USD", "entryBps": 50, "exitBps": 5,
            "quantity": 1000}
    unset = domain.canonicalize({"pegReversion": {**base, "peg": 0}}, kind=PEG_REVERSION)
    explicit = domain.canonicalize({"pegReversion": {**base, "peg": 1.0}}, kind=PEG_REVERSION)
    assert unset.content_hash == explicit.content_hash
    assert unset.parameters["pegReversion"]["peg"] == 1.0


def test_every_violation_is_reported_at_once_with_its_field_path() -> None:
    bad = {**SPREAD, "symbol": "usdc", "venueB": "binance", "entryBps": -1, "exitBps": 3,
           "quantity": 0, "bogus": 1}
    with pytest.raises(InvalidArgument) as err:
        domain.canonicalize({"crossExchangeSpread": bad}, kind=CROSS_EXCHANGE_SPREAD)
    got = fields(err.value)
    prefix = "version.parameters.crossExchangeSpread"
    assert got[f"{prefix}.entryBps"] == "expected a number > 0, got -1.0"
    assert got[f"{prefix}.quantity"] == "expected a number > 0, got 0.0"
    assert got[f"{prefix}.symbol"].startswith("expected a string matching")
    assert got[f"{prefix}.venueB"] == "expected a venue other than venueA, got 'binance'"
    assert "bogus" in got[prefix]


def test_exit_must_be_tighter_than_entry() -> None:
    with pytest.raises(InvalidArgument) as err:
        domain.canonicalize(
            {"crossExchangeSpread": {**SPREAD, "exitBps": 15}}, kind=CROSS_EXCHANGE_SPREAD
        )
    assert "less than entryBps" in fields(err.value)[
        "version.parameters.crossExchangeSpread.exitBps"]


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_numbers_are_refused(value: float) -> None:
    with pytest.raises(InvalidArgument) as err:
        domain.canonicalize(
            {"crossExchangeSpread": {**SPREAD, "quantity": value}}, kind=CROSS_EXCHANGE_SPREAD
        )
    assert "version.parameters.crossExchangeSpread.quantity" in fields(err.value)


def test_parameters_of_another_kind_are_refused() -> None:
    with pytest.raises(InvalidArgument) as err:
        domain.canonicalize({"pegReversion": {"venue": "kraken"}}, kind=CROSS_EXCHANGE_SPREAD)
    assert "crossExchangeSpread" in fields(err.value)["version.parameters"]


def test_triangular_symbols_must_form_a_loop() -> None:
    ok = {"venue": "binance", "symbols": ["BTC/USDC", "BTC/USDT", "USDC/USDT"],
          "minEdgeBps": 5, "notional": 1000}
    domain.canonicalize({"triangular": ok}, kind=TRIANGULAR)
    with pytest.raises(InvalidArgument) as err:
        domain.canonicalize(
            {"triangular": {**ok, "symbols": ["BTC/USDC", "ETH/USDT", "USDC/USDT"]}},
            kind=TRIANGULAR,
        )
    assert "loop" in fields(err.value)["version.parameters.triangular.symbols"]


def test_every_kind_schema_accepts_its_documented_example() -> None:
    examples = {
        "crossExchangeSpread": SPREAD,
        "pegReversion": {"venue": "kraken", "symbol": "USDC/USD", "entryBps": 50,
                         "exitBps": 5, "quantity": 1000},
        "triangular": {"venue": "binance", "symbols": ["BTC/USDC", "BTC/USDT", "USDC/USDT"],
                       "minEdgeBps": 5, "notional": 1000},
    }
    for kind in KINDS:
        assert domain.canonicalize({kind.param_key: examples[kind.param_key]}, kind=kind)


def test_diff_lists_changed_added_and_removed_paths() -> None:
    old = {"crossExchangeSpread": {"entryBps": 15.0, "exitBps": 3.0, "gone": 1}}
    new = {"crossExchangeSpread": {"entryBps": 10.0, "exitBps": 3.0, "new": 2}}
    changes = domain.diff_parameters(old, new)
    assert [(c.path, c.change_type, c.old_value, c.new_value) for c in changes] == [
        ("crossExchangeSpread.entryBps", "MODIFIED", 15.0, 10.0),
        ("crossExchangeSpread.gone", "REMOVED", 1, None),
        ("crossExchangeSpread.new", "ADDED", None, 2),
    ]
    assert domain.diff_parameters(old, old) == []


@pytest.mark.parametrize(
    ("current", "target"),
    [(VersionState.DRAFT, VersionState.BACKTESTED), (VersionState.BACKTESTED,
      VersionState.APPROVED), (VersionState.APPROVED, VersionState.RETIRED),
     (VersionState.DEPLOYED, VersionState.RETIRED)],
)
def test_lifecycle_allows_forward_moves(current: VersionState, target: VersionState) -> None:
    domain.check_transition("v", current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [(VersionState.DRAFT, VersionState.APPROVED), (VersionState.APPROVED, VersionState.DRAFT),
     (VersionState.RETIRED, VersionState.DRAFT), (VersionState.APPROVED,
      VersionState.DEPLOYED)],
)
def test_lifecycle_refuses_skips_backward_moves_and_direct_deploys(
    current: VersionState, target: VersionState
) -> None:
    with pytest.raises(FailedPrecondition):
        domain.check_transition("v", current, target)


@pytest.mark.parametrize("strategy_id", ["ab", "Upper", "1abc", "a" * 64, "has_underscore"])
def test_strategy_ids_are_checked(strategy_id: str) -> None:
    with pytest.raises(InvalidArgument):
        domain.check_strategy_id(strategy_id)
