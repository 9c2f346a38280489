"""The Python and Go SDKs against the running mesh, through Envoy with real tokens."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from usdcarb.devstack.stack import StackInfo
from usdcarb.gateway.devtoken import mint_dev_token
from usdcarb_sdk import (
    AsyncClient,
    Client,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    Unavailable,
    v1,
)
from usdcarb_sdk.frames import to_frame

pytestmark = pytest.mark.e2e

GO_MODULE = Path(__file__).resolve().parents[2] / "clients" / "go"


def spread(entry_bps: float) -> dict[str, Any]:
    return {"crossExchangeSpread": {"symbol": "USDC/USDT", "venueA": "binance",
                                    "venueB": "kraken", "entryBps": entry_bps, "exitBps": 3,
                                    "quantity": 10000}}


@pytest.fixture(scope="module")
def token() -> str:
    return mint_dev_token("sdk-analyst", ["analyst"])


def new_id() -> str:
    return f"sdk-{uuid.uuid4().hex[:8]}"


async def test_async_client_creates_a_strategy_and_pages_its_versions(
    stack: StackInfo, token: str
) -> None:
    sid = new_id()
    async with AsyncClient(stack.gateway, token=token) as client:
        strategy = await client.strategies.create(
            strategy_id=sid, display_name="SDK spread", kind="cross-exchange-spread",
            labels={"suite": "sdk"})
        assert strategy.name == f"strategies/{sid}" and strategy.creator == "sdk-analyst"
        assert strategy.kind is v1.StrategyKind.CROSS_EXCHANGE_SPREAD
        made = [await client.strategies.create_version(sid, spread(bps)) for bps in (10, 20, 30)]
        again = await client.strategies.create_version(sid, spread(20))
        assert again.version_id == made[1].version_id  # content-addressed

        first = await client.strategies.list_strategy_versions(
            v1.ListStrategyVersionsRequest(parent=strategy.name, page_size=2))
        assert len(first.versions) == 2 and first.next_page_token
        every = [v async for v in client.strategies.all_versions(sid, page_size=1)]
        assert [v.version_id for v in every] == [v.version_id for v in reversed(made)]
        assert every[0].state is v1.VersionState.DRAFT

        mine = [s async for s in client.strategies.all_strategies(label="suite=sdk")]
        assert strategy.name in {s.name for s in mine}
        frame = to_frame(mine)
        assert {"name", "kind", "labels.suite"} <= set(frame.columns)


async def test_async_client_reports_bad_parameters_field_by_field(
    stack: StackInfo, token: str
) -> None:
    async with AsyncClient(stack.gateway, token=token) as client:
        strategy = await client.strategies.create(display_name="bad", kind="cross-exchange-spread")
        with pytest.raises(InvalidArgument) as err:
            await client.strategies.create_version(strategy.name, spread(-1))
    fields = {v.field: v.description for v in err.value.field_violations}
    assert fields == {"version.parameters.crossExchangeSpread.entryBps":
                      "expected a number > 0, got -1.0"}
    assert err.value.reason == "INVALID_ARGUMENT" and err.value.request_id


async def test_async_client_raises_not_found_with_resource_info(
    stack: StackInfo, token: str
) -> None:
    async with AsyncClient(stack.gateway, token=token) as client:
        with pytest.raises(NotFound) as err:
            await client.strategies.get(new_id())
    assert err.value.error_info is not None and err.value.error_info.domain == "usdcarb.dev"


async def test_every_service_answers_through_the_sdk(stack: StackInfo, token: str) -> None:
    # NotificationService answered UNIMPLEMENTED before issue 10; now it serves, owner-scoped.
    async with AsyncClient(stack.gateway, token=token) as client:
        listed = await client.notifications.list_channels()
        with pytest.raises(NotFound) as missing:
            await client.notifications.get_channel(v1.GetChannelRequest(
                name=f"channels/{new_id()}"))
    assert isinstance(listed.channels, list)
    assert missing.value.error_info is not None and missing.value.reason


async def test_calls_without_a_token_are_unauthenticated(stack: StackInfo) -> None:
    async with AsyncClient(stack.gateway) as client:
        with pytest.raises(Unauthenticated):
            await client.strategies.list_strategies()


async def test_an_expiring_token_is_replaced_before_the_call(stack: StackInfo) -> None:
    minted: list[str] = []

    async def provider() -> str:
        minted.append(mint_dev_token("sdk-refresh", ["analyst"]))
        return minted[-1]

    expired = mint_dev_token("sdk-refresh", ["analyst"], ttl=-3600)
    async with AsyncClient(stack.gateway, token=expired, token_provider=provider) as client:
        strategy = await client.strategies.create(display_name="r", kind="peg-reversion")
        await client.strategies.get(strategy.name)
    assert len(minted) == 1 and strategy.creator == "sdk-refresh"


async def test_a_refused_token_is_refreshed_once_and_the_call_repeated(
    stack: StackInfo,
) -> None:
    calls = 0

    def provider() -> str:
        nonlocal calls
        calls += 1
        return mint_dev_token("sdk-retry", ["analyst"])

    # No exp claim to read, so it is sent, refused by Envoy, and replaced.
    async with AsyncClient(stack.gateway, token="not.a.jwt", token_provider=provider) as client:
        page = await client.strategies.list_strategies(page_size=1)
    assert calls == 1 and isinstance(page, v1.ListStrategiesResponse)


def test_sync_client_has_the_same_surface(stack: StackInfo, token: str) -> None:
    sid = new_id()
    with Client(stack.gateway, token=token) as client:
        strategy = client.strategies.create(strategy_id=sid, display_name="sync",
                                            kind=v1.StrategyKind.CROSS_EXCHANGE_SPREAD)
        client.strategies.create_version(sid, spread(11))
        client.strategies.create_version(
            sid, v1.CrossExchangeSpreadParams(symbol="USDC/USDT", venue_a="binance",
                                              venue_b="kraken", entry_bps=12, exit_bps=3,
                                              quantity=10000))
        versions = list(client.strategies.all_versions(sid, page_size=1))
        assert [v.sequence for v in versions] == [2, 1]
        assert client.strategies.get(sid).version_count == 2
        with pytest.raises(InvalidArgument) as err:
            client.strategies.create_version(strategy.name, spread(0))
        assert err.value.field_violations
        assert isinstance(client.notifications.list_channels(v1.ListChannelsRequest()).channels,
                          list)
    with Client(stack.gateway) as anonymous, pytest.raises(Unauthenticated):
        anonymous.strategies.get(sid)


@pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed")
def test_go_example_creates_a_strategy_and_a_version(stack: StackInfo, token: str) -> None:
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    done = subprocess.run(
        ["go", "run", "./examples/strategies", "-target", stack.gateway_target,
         "-cacert", stack.ca, "-token", token, "-id", new_id()],
        cwd=GO_MODULE, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr
    decoder = json.JSONDecoder()
    strategy, end = decoder.raw_decode(done.stdout)
    version, _ = decoder.raw_decode(done.stdout[end:].lstrip())
    assert strategy["creator"] == "sdk-analyst"
    assert version["name"].startswith(strategy["name"] + "/versions/")
    assert version["state"] == "VERSION_STATE_DRAFT"


async def test_the_sdk_speaks_tls_and_trusts_only_the_ca_it_is_given(
    stack: StackInfo, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert stack.gateway.startswith("https://")
    monkeypatch.delenv("USDCARB_CA_FILE", raising=False)
    # An explicit CA, and a bare host:port made TLS by it.
    for target in (stack.gateway, stack.gateway_target):
        async with AsyncClient(target, token=token, ca_file=stack.ca, retries=0) as client:
            kinds = await client.strategies.list_strategy_kinds(v1.ListStrategyKindsRequest())
        assert kinds.strategy_kinds
    # The system's roots do not know the dev CA; plaintext reaches no HTTP/2 peer.
    for target in (stack.gateway, "http://" + stack.gateway_target):
        async with AsyncClient(target, token=token, retries=0, timeout=5) as client:
            with pytest.raises(Unavailable):
                await client.strategies.list_strategy_kinds(v1.ListStrategyKindsRequest())
