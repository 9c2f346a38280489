"""The bad input table through the gateway: every malformed, mistyped, unknown, oversized,
non-finite or out-of-range input is a 4xx google.rpc.Status JSON naming what is wrong, and
nothing is written."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from identity.gatewaykit import Reply, admin_token, call
from usdcarb.devstack.stack import StackInfo

pytestmark = pytest.mark.e2e

PEG = {"venue": "binance", "symbol": "USDC/USDT", "entryBps": 10, "exitBps": 2, "quantity": 100}
WRITTEN_TABLES = ("strategy.strategies", "strategy.versions", "strategy.deployments",
                  "strategy.version_transitions", "backtest.backtests", "backtest.sweeps")


def _count(dsn: str) -> dict[str, int]:
    async def count() -> dict[str, int]:
        conn = await asyncpg.connect(dsn)
        try:
            return {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}"))
                    for t in WRITTEN_TABLES}
        finally:
            await conn.close()

    return asyncio.run(count())


@pytest.fixture(scope="module")
def admin(stack: StackInfo) -> str:
    return str(admin_token(stack, source="127.0.0.13"))


@pytest.fixture(scope="module")
def strategy(stack: StackInfo, admin: str) -> str:
    reply = call(stack, "POST", "/v1/strategies",
                 {"displayName": "bad input target", "kind": "STRATEGY_KIND_PEG_REVERSION"},
                 token=admin)
    assert reply.status == 200, reply.body
    name: str = reply.json()["name"]
    return name


@pytest.fixture(scope="module")
def unchanged(stack: StackInfo, strategy: str) -> Iterator[None]:
    """Fail the module if any table a request here could write to changed."""
    before = _count(stack.dsn)
    yield
    assert _count(stack.dsn) == before


def _create(**strategy: Any) -> tuple[str, str, Any]:
    return "POST", "/v1/strategies", {"kind": "STRATEGY_KIND_PEG_REVERSION",
                                      "displayName": "x", **strategy}


def _version(strategy: str, **peg: Any) -> tuple[str, str, Any]:
    return ("POST", f"/v1/{strategy}/versions",
            {"parameters": {"pegReversion": {**PEG, **peg}}})


def _backtest(**venue: Any) -> tuple[str, str, Any]:
    return "POST", "/v1/backtests", {  # body: the Backtest
        "strategyVersion": "strategies/x/versions/0123456789abcdef",
        "config": {"timeframe": "1h", "venues": [{"venue": "binance", **venue}]}}


# (case, request maker, HTTP status, text the Status must contain: the field)
CASES: dict[str, tuple[Any, int, str]] = {
    "malformed JSON (bare NaN token)": (lambda s: _create(displayName=math.nan), 400,
                                       "Unexpected token"),
    "wrong type: number for a string": (lambda s: _create(displayName=5), 400, "display_name"),
    "wrong type: object for a map value": (lambda s: _create(labels={"a": {}}), 400,
                                           "strategy.labels.a"),
    "unknown field at the top of the body": (lambda s: _create(colour="red"), 400,
                                             "strategy.colour"),
    "unknown field in strategy parameters": (lambda s: _version(s, entryBsp=5), 400,
                                             "version.parameters.pegReversion.entryBsp"),
    "unknown field four levels down": (
        lambda s: _backtest(slippage={"fixedBps": 1, "fixdBps": 2}), 400,
        "backtest.config.venues[0].slippage.fixdBps"),
    "unknown field in a body:* request": (
        lambda s: ("POST", f"/v1/{s}/versions/0123456789abcdef:transition",
                   {"state": "VERSION_STATE_APPROVED", "reasonn": "typo"}), 400, "reasonn"),
    "misplaced wrapper object": (
        lambda s: ("POST", "/v1/strategies", {"strategy": {"displayName": "x"}}), 400,
        "strategy.strategy"),
    "NaN as a string": (lambda s: _version(s, entryBps="NaN"), 400,
                        "version.parameters.pegReversion.entryBps"),
    "Infinity as a string": (lambda s: _version(s, quantity="Infinity"), 400,
                             "version.parameters.pegReversion.quantity"),
    "1e999 overflows to infinity": (lambda s: _version(s, quantity="1e999"), 400, "quantity"),
    "1e308 where an int32 goes": (lambda s: _version(s, maxHoldingBars=1e308), 400,
                                  "max_holding_bars"),
    "int32 out of range": (lambda s: _version(s, maxHoldingBars=2**31), 400,
                           "max_holding_bars"),
    "int32 out of range in a list item": (lambda s: _backtest(latencyBars=2**40), 400,
                                          "latency_bars"),
    "5 MB body": (lambda s: _create(description="x" * 5 * 1024 * 1024), 413, "at most"),
    "NUL in a resource name": (lambda s: ("GET", "/v1/strategies/a%00b", None), 400,
                               "without NUL"),
    "NUL in a body string": (lambda s: _create(displayName="a\x00b"), 400,
                             "strategy.displayName"),
    "dot-dot in a resource name": (lambda s: ("GET", "/v1/strategies/..%2F..%2Fbacktests", None),
                                   400, "expected a request path"),
    "dot-dot segment in a path": (lambda s: ("GET", "/v1/strategies/..", None), 404,
                                  "Could not resolve"),
    "dot-dot as a new id": (lambda s: ("POST", "/v1/strategies?strategyId=..",
                                       {"kind": "STRATEGY_KIND_PEG_REVERSION",
                                        "displayName": "x"}), 400, "strategy_id"),
    "enum name that does not exist": (lambda s: _create(kind="STRATEGY_KIND_MARTINGALE"), 400,
                                      "kind"),
}


def _status(reply: Reply) -> dict[str, Any]:
    assert reply.headers.get("content-type") == "application/json", (reply.headers, reply.body)
    status: dict[str, Any] = reply.json()
    assert status["message"].strip() and status["code"] in (3, 5, 11), status
    types = {d["@type"].rsplit("/", 1)[-1] for d in status["details"]}
    assert "google.rpc.ErrorInfo" in types, status
    return status


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_a_4xx_status_naming_the_field_and_writes_nothing(
    stack: StackInfo, admin: str, strategy: str, unchanged: None, case: str,
) -> None:
    make, expected_status, names = CASES[case]
    method, path, body = make(strategy)
    reply = call(stack, method, path, body, token=admin, timeout=30)
    assert reply.status == expected_status, (case, reply.status, reply.body[:400])
    status = _status(reply)
    violations = [v for d in status["details"] for v in d.get("fieldViolations", ())]
    named = status["message"] + " ".join(v["field"] for v in violations)
    assert names in named, (case, status)


def test_a_stream_failing_before_its_first_message_is_its_http_status(
    stack: StackInfo, admin: str,
) -> None:
    for accept in ("application/json", "text/event-stream"):
        reply = call(stack, "GET", "/v1/backtests/no-such-backtest:watch", token=admin,
                     headers={"accept": accept})
        assert reply.status == 404, (accept, reply.body)
        status = _status(reply)
        assert status["code"] == 5 and "no-such-backtest" in status["message"]
