"""BacktestConfig's execution model, per-venue latency and caps, robustness panel ↔ engine."""

from __future__ import annotations

import pytest
from google.protobuf import json_format

from usdcarb.backtest.config import parse_config
from usdcarb.backtest.engine import Execution, Robustness
from usdcarb.platform.errors import InvalidArgument
from usdcarb.v1 import backtest_pb2 as pb

pytestmark = pytest.mark.unit

LEGS = [("binance", "USDC/USDT"), ("kraken", "USDC/USDT")]


def _config(**extra: object) -> pb.BacktestConfig:
    data = {"range": {"startTime": "2023-03-10T00:00:00Z", "endTime": "2023-03-11T00:00:00Z"},
            "timeframe": "5m",
            "venues": [{"venue": "binance", "takerFeeBps": 10,
                        "initialBalances": [{"asset": "USDT", "amount": 1e6}]},
                       {"venue": "kraken", "takerFeeBps": 7.5, "latencyMs": 301_000,
                        "participationCap": 0.25}]} | extra
    return json_format.ParseDict(data, pb.BacktestConfig())


def test_the_default_execution_is_all_or_nothing_taker_and_keeps_its_hash() -> None:
    spec = parse_config(_config(execution={"legMode": "LEG_MODE_INDEPENDENT"}), LEGS)
    assert spec.engine.execution == Execution(leg_mode="independent")
    plain = parse_config(_config(venues=[{"venue": "binance"}, {"venue": "kraken"}]), LEGS)
    assert plain.engine.execution == Execution() and "execution" not in plain.canonical
    assert spec.engine.robustness is None
    assert spec.engine.bar_ms == 300_000
    kraken = next(v for v in spec.engine.venues if v.venue == "kraken")
    assert kraken.latency_ms == 301_000 and kraken.participation_cap == 0.25
    assert "robustness" not in spec.canonical
    binance = next(v for v in spec.canonical["venues"] if v["venue"] == "binance")
    assert "latencyMs" not in binance and "participationCap" not in binance


def test_execution_and_robustness_map_onto_the_engine_and_the_canonical_form() -> None:
    spec = parse_config(_config(
        execution={"legMode": "LEG_MODE_INDEPENDENT", "oneLegPolicy": "ONE_LEG_POLICY_RETRY",
                   "retryBars": 3, "orderType": "ORDER_TYPE_MAKER", "makerTimeoutBars": 2},
        robustness={"enabled": True}), LEGS)
    assert spec.engine.execution == Execution(leg_mode="independent", one_leg="retry",
                                              retry_bars=3, order_type="maker",
                                              maker_timeout_bars=2)
    assert spec.engine.robustness == Robustness(extra_latency_bars=(1, 2),
                                                cost_multipliers=(1.5, 2.0))
    assert spec.canonical["execution"]["legMode"] == "independent"
    assert spec.canonical["robustness"] == {"extraLatencyBars": [1, 2],
                                            "costMultipliers": [1.5, 2.0]}
    custom = parse_config(_config(robustness={"enabled": True, "extraLatencyBars": [5],
                                              "costMultipliers": [3]},
                                  execution={"legMode": "LEG_MODE_INDEPENDENT"}), LEGS)
    assert custom.engine.robustness == Robustness(extra_latency_bars=(5,),
                                                  cost_multipliers=(3.0,))


@pytest.mark.parametrize(("extra", "field"), [
    ({"venues": [{"venue": "binance", "participationCap": 1.5}, {"venue": "kraken"}]},
     "config.venues[0].participation_cap"),
    ({"venues": [{"venue": "binance", "latencyMs": -1}, {"venue": "kraken"}]},
     "config.venues[0].latency_ms"),
    ({"execution": {"retryBars": 20_000}}, "config.execution.retry_bars"),
    ({"execution": {"makerTimeoutBars": -2}}, "config.execution.maker_timeout_bars"),
    ({"robustness": {"enabled": True, "costMultipliers": [0]}},
     "config.robustness.cost_multipliers[0]"),
    ({"robustness": {"enabled": True, "extraLatencyBars": [0]}},
     "config.robustness.extra_latency_bars[0]"),
    ({"robustness": {"costMultipliers": [2]}}, "config.robustness.enabled"),
    ({"venues": [{"venue": "binance", "participationCap": 0.5}, {"venue": "kraken"}],
      "execution": {"legMode": "LEG_MODE_ALL_OR_NOTHING"}},
     "config.venues[0].participation_cap"),
])
def test_out_of_bounds_execution_knobs_are_invalid_argument(extra: dict[str, object],
                                                            field: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_config(_config(**extra), LEGS)
    fields = {v.field: v.description for v in exc.value.field_violations}
    assert field in fields and fields[field].startswith("expected "), fields


def test_a_triangular_loop_refuses_independent_legs_and_maker_orders() -> None:
    tri = [("binance", "BTC/USDT"), ("binance", "BTC/USDC"), ("binance", "USDC/USDT")]
    cfg = json_format.ParseDict({
        "range": {"startTime": "2023-03-10T00:00:00Z", "endTime": "2023-03-11T00:00:00Z"},
        "venues": [{"venue": "binance"}],
        "execution": {"orderType": "ORDER_TYPE_MAKER"}}, pb.BacktestConfig())
    with pytest.raises(InvalidArgument) as exc:
        parse_config(cfg, tri)
    assert [v.field for v in exc.value.field_violations] == ["config.execution"]
