"""SDK pieces without a server: method table, idempotency, retry policy, tokens, errors."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
from pathlib import Path

import grpc
import pytest

from usdcarb_sdk import AsyncClient, Client, v1
from usdcarb_sdk._gen.google import protobuf, rpc
from usdcarb_sdk._methods import SERVICE_ATTRIBUTES, is_idempotent, services
from usdcarb_sdk.auth import AsyncTokenSource, TokenSource, jwt_expiry
from usdcarb_sdk.error_details import BadRequest, BadRequestFieldViolation, ErrorInfo, RetryInfo
from usdcarb_sdk.errors import (
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    UsdcarbError,
    from_rpc_error,
)
from usdcarb_sdk.retry import Attempts, RetryPolicy
from usdcarb_sdk.strategy_requests import (
    create_strategy_request,
    create_version_request,
    parse_kind,
)

pytestmark = pytest.mark.unit

PROTOS = Path(__file__).resolve().parents[2] / "proto" / "usdcarb" / "v1"


def proto_rpcs() -> dict[str, bool]:
    """Return {"/usdcarb.v1.Svc/Method": server_streaming} read from the .proto files."""
    found: dict[str, bool] = {}
    for path in PROTOS.glob("*.proto"):
        text = path.read_text()
        for service, body in re.findall(r"service (\w+) \{(.*?)\n\}", text, re.S):
            for name, stream in re.findall(r"rpc (\w+)\(\w+\) returns \((stream )?", body):
                found[f"/usdcarb.v1.{service}/{name}"] = bool(stream)
    return found


def test_method_table_matches_every_rpc_of_the_protos() -> None:
    table = {m.path: m.server_streaming for s in services() for m in s.methods}
    assert table == proto_rpcs()
    assert len(table) > 60


def test_every_generated_stub_has_a_client_attribute() -> None:
    stubs = {name for name in vars(v1) if name.endswith("ServiceStub")}
    assert stubs == set(SERVICE_ATTRIBUTES)
    assert [s.attribute for s in services()] == list(SERVICE_ATTRIBUTES.values())


def test_method_spec_types_come_from_the_stub() -> None:
    (strategy,) = [s for s in services() if s.attribute == "strategies"]
    spec = {m.attribute: m for m in strategy.methods}["create_strategy_version"]
    assert spec.request_type is v1.CreateStrategyVersionRequest
    assert spec.response_type is v1.StrategyVersion
    assert spec.name == "CreateStrategyVersion" and "same parameters twice" in spec.doc


def test_clients_expose_every_rpc_as_a_method() -> None:
    for client in (AsyncClient("127.0.0.1:1"), Client("127.0.0.1:1")):
        for service in services():
            bound = getattr(client, service.attribute)
            for method in service.methods:
                assert callable(getattr(bound, method.attribute)), method.path
    assert "StrategyService/GetStrategy" in Client("127.0.0.1:1").strategies.get_strategy.__doc__


def spec(path: str) -> object:
    return next(m for s in services() for m in s.methods if m.path == path)


@pytest.mark.parametrize(("path", "request_", "expected"), [
    ("/usdcarb.v1.StrategyService/GetStrategy", v1.GetStrategyRequest(), True),
    ("/usdcarb.v1.StrategyService/ListStrategies", v1.ListStrategiesRequest(), True),
    ("/usdcarb.v1.StrategyService/DiffStrategyVersions", v1.DiffStrategyVersionsRequest(), True),
    ("/usdcarb.v1.BacktestService/WatchBacktest", v1.WatchBacktestRequest(), True),
    ("/usdcarb.v1.StrategyService/CreateStrategyVersion", v1.CreateStrategyVersionRequest(), True),
    ("/usdcarb.v1.StrategyService/CreateStrategy", v1.CreateStrategyRequest(request_id="r"), True),
    ("/usdcarb.v1.StrategyService/CreateStrategy", v1.CreateStrategyRequest(), False),
    ("/usdcarb.v1.StrategyService/UpdateStrategy", v1.UpdateStrategyRequest(), False),
    ("/usdcarb.v1.StrategyService/DeleteStrategy", v1.DeleteStrategyRequest(), False),
    ("/usdcarb.v1.BacktestService/RunBacktest", v1.RunBacktestRequest(request_id="r"), False),
])
def test_idempotent_methods(path: str, request_: object, expected: bool) -> None:
    assert is_idempotent(spec(path), request_) is expected  # type: ignore[arg-type]


def error(klass: type[UsdcarbError], *details: object) -> UsdcarbError:
    return klass("x", details=list(details))  # type: ignore[arg-type]


def test_retry_policy_backs_off_exponentially_with_jitter() -> None:
    policy = RetryPolicy(max_retries=5, initial_backoff=0.1, max_backoff=0.3)
    from usdcarb_sdk.errors import Unavailable

    low = [policy.delay(error(Unavailable), n, True, rng=lambda: 0.0) for n in range(4)]
    high = [policy.delay(error(Unavailable), n, True, rng=lambda: 1.0) for n in range(4)]
    assert low == pytest.approx([0.05, 0.1, 0.15, 0.15])
    assert high == pytest.approx([0.1, 0.2, 0.3, 0.3])
    assert policy.delay(error(Unavailable), 5, True) is None
    assert policy.delay(error(Unavailable), 0, False) is None


def test_retry_policy_honours_retry_info_on_resource_exhausted() -> None:
    policy = RetryPolicy()
    hinted = error(ResourceExhausted, RetryInfo(retry_delay=dt.timedelta(seconds=2)))
    assert policy.delay(hinted, 0, True, rng=lambda: 0.0) == pytest.approx(2.0)
    assert policy.delay(error(ResourceExhausted), 0, True) is None
    too_long = error(ResourceExhausted, RetryInfo(retry_delay=dt.timedelta(minutes=5)))
    assert policy.delay(too_long, 0, True) is None
    assert policy.delay(error(NotFound), 0, True) is None


def test_attempts_stop_at_the_deadline() -> None:
    from usdcarb_sdk.errors import Unavailable

    now = [0.0]
    attempts = Attempts(RetryPolicy(initial_backoff=1.0), True, False, 1.5, clock=lambda: now[0])
    assert attempts.next_delay(error(Unavailable)) is not None
    now[0] = 1.4
    assert attempts.next_delay(error(Unavailable)) is None


def jwt(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


def test_jwt_expiry_reads_exp_without_verifying() -> None:
    assert jwt_expiry(jwt({"exp": 1234})) == 1234.0
    assert jwt_expiry(jwt({"sub": "a"})) is None
    assert jwt_expiry("not-a-jwt") is None
    assert jwt_expiry("a.!!!.c") is None


def test_sync_token_source_refreshes_near_expiry() -> None:
    issued: list[str] = []

    def provider() -> str:
        issued.append(jwt({"exp": 1000 + 100 * len(issued)}))
        return issued[-1]

    now = [0.0]
    source = TokenSource(provider=provider, leeway=60, clock=lambda: now[0])
    first = source.token()
    assert source.token() == first and len(issued) == 1
    now[0] = 950.0  # within the leeway of exp=1000
    assert source.token() != first and len(issued) == 2
    source.refresh("some other token")  # already replaced: no new call
    assert len(issued) == 2
    source.refresh(source.token())
    assert len(issued) == 3


def test_sync_token_source_refuses_an_async_provider() -> None:
    async def provider() -> str:
        return "t"

    with pytest.raises(TypeError, match="synchronous token provider"):
        TokenSource(provider=provider).token()


async def test_async_token_source_awaits_async_providers_once_for_concurrent_calls() -> None:
    calls = 0

    async def provider() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return jwt({"exp": 4_000_000_000})

    source = AsyncTokenSource(provider=provider)
    tokens = await asyncio.gather(*(source.token() for _ in range(5)))
    assert calls == 1 and len(set(tokens)) == 1


def test_static_token_is_never_refreshed() -> None:
    source = TokenSource("static")
    assert source.token() == "static" and not source.can_refresh


def test_strategy_requests_accept_plain_values() -> None:
    assert parse_kind("cross-exchange-spread") is v1.StrategyKind.CROSS_EXCHANGE_SPREAD
    assert parse_kind("STRATEGY_KIND_PEG_REVERSION") is v1.StrategyKind.PEG_REVERSION
    assert parse_kind(3) is v1.StrategyKind.TRIANGULAR
    with pytest.raises(ValueError, match="expected a strategy kind"):
        parse_kind("martingale")
    request = create_strategy_request(display_name="d", kind="triangular", strategy_id="s")
    assert request.strategy is not None and request.request_id
    assert request.strategy.kind is v1.StrategyKind.TRIANGULAR
    by_dict = create_version_request("s", {"pegReversion": {"venue": "kraken", "entryBps": 5}})
    by_message = create_version_request(
        "strategies/s", v1.PegReversionParams(venue="kraken", entry_bps=5))
    assert by_dict.parent == by_message.parent == "strategies/s"
    assert bytes(by_dict) == bytes(by_message)


class FakeRpcError(grpc.RpcError):  # type: ignore[misc]
    """What grpc raises: a call with a code, details and trailing metadata."""

    def __init__(self, code: grpc.StatusCode, message: str, trailers: tuple[object, ...]):
        self._code, self._message, self._trailers = code, message, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> tuple[object, ...]:
        return self._trailers


def pack(message: object) -> protobuf.Any:
    return protobuf.Any(type_url=f"type.googleapis.com/google.rpc.{type(message).__name__}",
                        value=bytes(message))  # type: ignore[call-overload]


def test_rich_status_decodes_into_typed_details() -> None:
    status = rpc.Status(code=3, message="bad parameters", details=[
        pack(ErrorInfo(reason="INVALID_ARGUMENT", domain="usdcarb.dev")),
        pack(BadRequest(field_violations=[
            BadRequestFieldViolation(field="version.parameters", description="expected one kind")])),
        protobuf.Any(type_url="type.googleapis.com/acme.Unknown", value=b"\x01"),
    ])
    err = from_rpc_error(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "ignored",
                                      (("grpc-status-details-bin", bytes(status)),)), "/m")
    assert isinstance(err, InvalidArgument)
    assert err.message == "bad parameters" and err.reason == "INVALID_ARGUMENT"
    assert [(v.field, v.description) for v in err.field_violations] == [
        ("version.parameters", "expected one kind")]
    assert isinstance(err.details[-1], protobuf.Any)  # unknown details stay packed
    assert str(err) == "INVALID_ARGUMENT: bad parameters (/m)"


def test_status_without_details_and_unmapped_codes() -> None:
    err = from_rpc_error(FakeRpcError(grpc.StatusCode.DATA_LOSS, "lost", ()))
    assert type(err) is UsdcarbError and err.code is grpc.StatusCode.DATA_LOSS
    assert err.details == [] and err.reason == "" and err.retry_after is None
    broken = from_rpc_error(FakeRpcError(grpc.StatusCode.NOT_FOUND, "gone",
                                         (("grpc-status-details-bin", b"\xff\xff"),)))
    assert isinstance(broken, NotFound) and broken.message == "gone"
