"""The Envoy config generator: routes, JWT rules and filters derived from the descriptor set."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest

from usdcarb.gateway.api import load_services, template_regex
from usdcarb.gateway.config import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    REPO_ROOT,
    GatewayConfig,
    render_envoy_config,
    render_envoy_yaml,
    write_envoy_config,
)
from usdcarb.gateway.devtoken import DEV_JWKS, DevTokenRefused, mint_dev_token
from usdcarb.platform import authz
from usdcarb.ratelimit.limits import TIERS

pytestmark = pytest.mark.integration

Validate = Callable[[Path], "subprocess.CompletedProcess[str]"]

DESCRIPTOR = REPO_ROOT / "gen" / "descriptor" / "usdcarb.binpb"
FAKE_UPSTREAMS = {
    name: f"127.0.0.1:{port}"
    for name, port in zip(
        ("ingestion", "validation", "strategy", "backtest", "notification", "identity"),
        range(41001, 41007),
        strict=True,
    )
}


def child_env(**extra: str) -> dict[str, str]:
    """Return the environment for a `python -m` child that must import usdcarb.gateway."""
    paths = [str(REPO_ROOT / "services"), str(REPO_ROOT / "gen" / "python")]
    existing = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*paths, *([existing] if existing else [])]),
        **extra,
    }


def config(**overrides: Any) -> GatewayConfig:
    values: dict[str, Any] = {
        "listen_port": 40080,
        "admin_port": 40901,
        "upstreams": FAKE_UPSTREAMS,
        "descriptor_path": DESCRIPTOR,
        "jwks_file": DEV_JWKS,
    }
    values.update(overrides)
    return GatewayConfig(**values)


def hcm(bootstrap: dict[str, Any]) -> dict[str, Any]:
    listener = bootstrap["static_resources"]["listeners"][0]
    typed: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return typed


def routes(bootstrap: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = hcm(bootstrap)["route_config"]["virtual_hosts"][0]["routes"]
    return found


def filters(bootstrap: dict[str, Any]) -> list[str]:
    return [f["name"] for f in hcm(bootstrap)["http_filters"]]


def route_named(bootstrap: dict[str, Any], name: str) -> dict[str, Any]:
    for route in routes(bootstrap):
        if route["name"] == name:
            return route
    raise AssertionError(f"expected a route named {name}")


def first_route_for(bootstrap: dict[str, Any], method: str, path: str,
                    headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Mimic Envoy: the first route whose regex and header matchers all match."""
    sent = {":method": method, **(headers or {})}

    def header_ok(matcher: dict[str, Any]) -> bool:
        value = sent.get(matcher["name"])
        (kind, expected), = matcher["string_match"].items()
        return value is not None and (value == expected if kind == "exact"
                                      else kind == "contains" and expected in value)

    for route in routes(bootstrap):
        match = route["match"]
        if "safe_regex" not in match:
            continue
        if all(map(header_ok, match["headers"])) and re.fullmatch(
                match["safe_regex"]["regex"], path):
            return route
    raise AssertionError(f"expected a REST route for {method} {path}")


def test_every_method_gets_a_grpc_route_and_every_http_rule_a_rest_route() -> None:
    bootstrap = render_envoy_config(config())
    names = {r["name"] for r in routes(bootstrap)}
    services = load_services(DESCRIPTOR)
    assert {s.full_name.rsplit(".", 1)[1] for s in services} == {
        "IngestionService",
        "ValidationService",
        "StrategyService",
        "BacktestService",
        "NotificationService",
        "IdentityService",
    }
    for svc in services:
        for method in svc.methods:
            key = f"{svc.full_name}/{method.name}"
            if key in authz.MESH_ONLY:  # service credentials: never reachable at the edge
                assert f"grpc:{key}" not in names and f"rest:{key}" not in names
                continue
            grpc_route = route_named(bootstrap, f"grpc:{svc.full_name}/{method.name}")
            assert grpc_route["match"] == {"path": svc.grpc_path(method), "grpc": {}}
            assert grpc_route["route"]["cluster"] == svc.short_name
            assert method.http_rules, f"{method.name} has no google.api.http rule"
            assert f"rest:{svc.full_name}/{method.name}" in names


def test_clusters_are_http2_with_grpc_health_checks_and_no_panic_mode() -> None:
    bootstrap = render_envoy_config(config())
    clusters = {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}
    assert set(clusters) == set(FAKE_UPSTREAMS)
    strategy = clusters["strategy"]
    assert strategy["type"] == "STATIC"
    assert strategy["connect_timeout"] == "1s"
    options = strategy["typed_extension_protocol_options"]
    assert "http2_protocol_options" in next(iter(options.values()))["explicit_http_config"]
    (check,) = strategy["health_checks"]
    assert check["grpc_health_check"] == {"service_name": "usdcarb.v1.StrategyService"}
    assert check["interval"] == check["no_traffic_interval"] == "1s"
    # after a failed check, and while down, every 0.25 s; health changes not merged
    assert (check["healthy_edge_interval"] == check["unhealthy_edge_interval"]
            == check["unhealthy_interval"] == "0.25s")
    assert strategy["common_lb_config"] == {"healthy_panic_threshold": {"value": 0},
                                            "update_merge_window": "0s"}


def test_hostname_upstreams_use_strict_dns() -> None:
    upstreams = {**FAKE_UPSTREAMS, "backtest": "backtest.usdcarb.svc:50051"}
    bootstrap = render_envoy_config(config(upstreams=upstreams))
    clusters = {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}
    assert clusters["backtest"]["type"] == "STRICT_DNS"


def test_rest_paths_resolve_to_the_method_the_transcoder_calls() -> None:
    bootstrap = render_envoy_config(config())
    cases = {
        ("GET", "/v1/strategies/abc"): "StrategyService/GetStrategy",
        ("GET", "/v1/strategies"): "StrategyService/ListStrategies",
        ("GET", "/v1/strategies/s1/versions/v1:diff"): "StrategyService/DiffStrategyVersions",
        ("GET", "/v1/backtests/b1:watch"): "BacktestService/WatchBacktest",
        ("GET", "/v1/backtests/b1"): "BacktestService/GetBacktest",
        ("POST", "/v1/backtests/b1:cancel"): "BacktestService/CancelBacktest",
        ("GET", "/v1/backtests/b1/equityCurve"): "BacktestService/GetEquityCurve",
        ("POST", "/v1/candles:validate"): "ValidationService/ValidateCandles",
        ("GET", "/v1/candles:stream"): "IngestionService/StreamCandles",
        ("GET", "/.well-known/jwks.json"): "IdentityService/GetJwks",
        ("PATCH", "/v1/users/u1"): "IdentityService/UpdateUser",
    }
    for (verb, path), method in cases.items():
        assert first_route_for(bootstrap, verb, path)["name"] == f"rest:usdcarb.v1.{method}"


def test_server_streams_are_sse_for_callers_accepting_event_streams() -> None:
    bootstrap = render_envoy_config(config())
    sse = {"accept": "text/event-stream"}
    for verb, path, method in [("GET", "/v1/backtests/b1:watch", "BacktestService/WatchBacktest"),
                               ("POST", "/v1/backtests:run", "BacktestService/RunBacktest"),
                               ("GET", "/v1/candles:stream", "IngestionService/StreamCandles")]:
        route = first_route_for(bootstrap, verb, path, sse)
        assert route["name"] == f"rest:usdcarb.v1.{method}:sse"
        options = route["typed_per_filter_config"][
            "envoy.filters.http.grpc_json_transcoder"]["print_options"]
        assert options["stream_sse_style_delimited"] is True
        assert "stream_newline_delimited" not in options
        plain = first_route_for(bootstrap, verb, path, {"accept": "application/json"})
        assert plain["name"] == f"rest:usdcarb.v1.{method}"
        assert plain["route"] == route["route"]  # same limits, timeouts and cluster
        assert plain["typed_per_filter_config"].keys() <= route["typed_per_filter_config"].keys()
    # Unary methods have no SSE twin.
    assert first_route_for(bootstrap, "GET", "/v1/backtests/b1", sse)["name"] == (
        "rest:usdcarb.v1.BacktestService/GetBacktest")


def test_streaming_routes_have_no_timeout_and_an_idle_timeout() -> None:
    bootstrap = render_envoy_config(config(stream_idle_timeout_s=1800, unary_timeout_s=20))
    for name in ("rest:", "grpc:"):
        watch = route_named(bootstrap, f"{name}usdcarb.v1.BacktestService/WatchBacktest")["route"]
        assert (watch["timeout"], watch["idle_timeout"]) == ("0s", "1800s")
        get = route_named(bootstrap, f"{name}usdcarb.v1.StrategyService/GetStrategy")["route"]
        assert get["timeout"] == "20s"
        assert "idle_timeout" not in get


def test_template_regex_escapes_literals_and_verbs() -> None:
    assert template_regex("/v1/{name=backtests/*}:cancel") == r"^/v1/backtests/[^/]+:cancel$"
    assert template_regex("/.well-known/jwks.json") == r"^/\.well\-known/jwks\.json$"
    assert template_regex("/v1/{strategy.name=strategies/*}") == r"^/v1/strategies/[^/]+$"
    assert template_regex("/v1/{parent=users/*}/apiKeys") == r"^/v1/users/[^/]+/apiKeys$"


def test_filter_chain_order_follows_the_note() -> None:
    assert filters(render_envoy_config(config())) == [
        "envoy.filters.http.header_mutation",
        "envoy.filters.http.jwt_authn",
        # Lua first: the tier for the buckets; on the way out it details their 429s.
        "envoy.filters.http.lua",
        *(f"usdcarb.local_ratelimit.{tier}" for tier in TIERS),  # one filter per tier
        "envoy.filters.http.grpc_json_transcoder",
        "envoy.filters.http.router",
    ]
    full = render_envoy_config(
        config(ratelimit_address="127.0.0.1:40081", cors_allowed_origins=("http://localhost:5173",))
    )
    assert filters(full) == [
        "envoy.filters.http.header_mutation",
        "envoy.filters.http.cors",
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.lua",
        *(f"usdcarb.local_ratelimit.{tier}" for tier in TIERS),  # one filter per tier
        "envoy.filters.http.ratelimit",
        "envoy.filters.http.grpc_json_transcoder",
        "envoy.filters.http.router",
    ]


def test_global_ratelimit_only_with_a_rate_limit_service() -> None:
    plain = render_envoy_config(config())
    assert "ratelimit" not in {c["name"] for c in plain["static_resources"]["clusters"]}
    limited = render_envoy_config(
        config(ratelimit_address="127.0.0.1:40081", ratelimit_failure_mode_deny=True)
    )
    (rl,) = [f for f in hcm(limited)["http_filters"] if f["name"] == "envoy.filters.http.ratelimit"]
    typed = rl["typed_config"]
    assert typed["domain"] == "usdcarb"
    assert typed["failure_mode_deny"] is True
    assert typed["rate_limited_as_resource_exhausted"] is True
    assert typed["enable_x_ratelimit_headers"] == "DRAFT_VERSION_03"
    assert "ratelimit" in {c["name"] for c in limited["static_resources"]["clusters"]}
    # Only the shared budgets call the service: ordinary routes have no descriptors.
    get = route_named(limited, "rest:usdcarb.v1.StrategyService/GetStrategy")["route"]
    assert "rate_limits" not in get
    create = route_named(limited, "rest:usdcarb.v1.BacktestService/CreateBacktest")["route"]
    actions = create["rate_limits"][0]["actions"]
    assert actions[0] == {"generic_key": {"descriptor_key": "class", "descriptor_value": "heavy"}}
    assert [a["request_headers"]["header_name"] for a in actions[1:]] == [
        "x-usdcarb-tier", "x-jwt-sub"]
    login = route_named(limited, "rest:usdcarb.v1.IdentityService/Login")["route"]
    assert login["rate_limits"][0]["actions"][1] == {"remote_address": {}}


def test_transcoder_options() -> None:
    bootstrap = render_envoy_config(config())
    (tc,) = [
        f["typed_config"]
        for f in hcm(bootstrap)["http_filters"]
        if f["name"] == "envoy.filters.http.grpc_json_transcoder"
    ]
    assert tc["proto_descriptor"] == str(DESCRIPTOR)
    assert len(tc["services"]) == 6
    assert tc["convert_grpc_status"] and tc["match_incoming_request_route"]
    assert tc["request_validation_options"] == {
        "reject_unknown_method": True,
        "reject_unknown_query_parameters": True,
    }
    assert tc["print_options"]["stream_newline_delimited"] is True
    assert tc["print_options"]["always_print_primitive_fields"] is True


def test_public_methods_and_health_need_no_jwt_and_everything_else_does() -> None:
    bootstrap = render_envoy_config(config())
    (jwt_filter,) = [
        f["typed_config"]
        for f in hcm(bootstrap)["http_filters"]
        if f["name"] == "envoy.filters.http.jwt_authn"
    ]
    rules = jwt_filter["rules"]
    open_paths = {r["match"].get("path") or r["match"].get("prefix") for r in rules[:-1]}
    open_regexes = {r["match"]["safe_regex"]["regex"] for r in rules if "safe_regex" in r["match"]}
    assert all("requires" not in r for r in rules[:-1])
    assert rules[-1] == {"match": {"prefix": "/"}, "requires": {"provider_name": "usdcarb"}}
    for method in ("Login", "RefreshToken", "ExchangeApiKey", "GetJwks"):
        assert f"/usdcarb.v1.IdentityService/{method}" in open_paths
    assert "/grpc.health.v1.Health/" in open_paths
    assert open_regexes == {
        template_regex(t)
        for t in (
            "/v1/auth:login",
            "/v1/auth:refresh",
            "/v1/auth:exchangeApiKey",
            "/.well-known/jwks.json",
        )
    }
    provider = jwt_filter["providers"]["usdcarb"]
    # The original token goes on: every service verifies it again (zero trust inside).
    assert provider["forward"] is True
    assert "forward_payload_header" not in provider
    assert "/usdcarb.v1.IdentityService/IssueServiceToken" not in open_paths
    assert provider["from_headers"] == [{"name": "authorization", "value_prefix": "Bearer "}]
    assert provider["local_jwks"] == {"filename": str(DEV_JWKS)}
    assert provider["clock_skew_seconds"] == 30


def test_remote_jwks_gets_its_own_cluster() -> None:
    bootstrap = render_envoy_config(
        config(jwks_mode="remote", jwks_uri="https://id.example.com/.well-known/jwks.json")
    )
    clusters = {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}
    assert clusters["jwks"]["type"] == "STRICT_DNS"
    tls = clusters["jwks"]["transport_socket"]["typed_config"]
    assert tls["sni"] == "id.example.com"
    validation = tls["common_tls_context"]["validation_context"]
    assert validation["match_typed_subject_alt_names"][0]["matcher"] == {"exact": "id.example.com"}
    (jwt_filter,) = [
        f["typed_config"]
        for f in hcm(bootstrap)["http_filters"]
        if f["name"] == "envoy.filters.http.jwt_authn"
    ]
    remote = jwt_filter["providers"]["usdcarb"]["remote_jwks"]
    assert remote["http_uri"]["cluster"] == "jwks"
    assert remote["cache_duration"] == "300s"


def test_prod_refuses_the_dev_jwks() -> None:
    with pytest.raises(ValueError, match="production JWKS"):
        config(env="prod")


def test_with_ports_takes_a_ports_map() -> None:
    cfg = config().with_ports(
        {"strategy": 50999, "gateway": 18080, "admin": 19901, "ratelimit": 18081}
    )
    assert cfg.upstreams["strategy"] == "127.0.0.1:50999"
    assert (cfg.listen_port, cfg.admin_port) == (18080, 19901)
    assert cfg.ratelimit_address == "127.0.0.1:18081"


def test_missing_upstream_is_refused() -> None:
    partial = {k: v for k, v in FAKE_UPSTREAMS.items() if k != "identity"}
    with pytest.raises(ValueError, match="identity"):
        render_envoy_config(config(upstreams=partial))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {
            "ratelimit_address": "127.0.0.1:40081",
            "cors_allowed_origins": ("http://localhost:5173",),
            "access_log_path": "/dev/null",
        },
        {"jwks_mode": "remote", "jwks_uri": "http://127.0.0.1:40080/.well-known/jwks.json"},
        {
            "jwks_mode": "remote",
            "jwks_uri": "https://id.example.com/jwks.json",
            "introspection_backend": None,
        },
    ],
    ids=["default", "ratelimit-cors-filelog", "remote-jwks", "remote-jwks-https"],
)
def test_envoy_validates_the_rendered_config(
    envoy_validate: Validate, tmp_path: Path, overrides: dict[str, Any]
) -> None:
    path = write_envoy_config(config(**overrides), tmp_path / "envoy.yaml")
    result = envoy_validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cli_writes_a_config_envoy_accepts(envoy_validate: Validate, tmp_path: Path) -> None:
    ports = tmp_path / "ports.json"
    ports.write_text(
        json.dumps({"strategy": 41111, "backtest": "127.0.0.1:41112", "gateway": 41180})
    )
    out = tmp_path / "envoy.yaml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "usdcarb.gateway.config",
            "--out",
            str(out),
            "--ports-json",
            str(ports),
        ],
        check=True,
        cwd=tmp_path,
        env=child_env(),
    )
    text = out.read_text()
    assert "port_value: 41111" in text and "port_value: 41180" in text
    assert str(DESCRIPTOR) in text  # absolute paths: Envoy may run from anywhere
    result = envoy_validate(out)
    assert result.returncode == 0, result.stdout + result.stderr


def test_committed_reference_config_is_current_and_valid(envoy_bin: str) -> None:
    reference = REPO_ROOT / "gateway" / "envoy.local.yaml"
    cfg = GatewayConfig(
        descriptor_path=Path("gen/descriptor/usdcarb.binpb"),
        jwks_file=Path("gateway/dev-keys/DEV-ONLY-jwks.json"),
    )
    body = render_envoy_yaml(cfg, base_dir=REPO_ROOT)
    committed = reference.read_text()
    assert committed.endswith(body), (
        "gateway/envoy.local.yaml is stale: run "
        "`python -m usdcarb.gateway.config --relative-paths --out gateway/envoy.local.yaml`"
    )
    result = subprocess.run(
        [
            envoy_bin,
            "--mode",
            "validate",
            "-c",
            str(reference),
            "--disable-hot-restart",
            "--log-level",
            "warn",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dev_token_has_the_claims_envoy_checks() -> None:
    token = mint_dev_token("alice", ["analyst"], ttl=600)
    header = jwt.get_unverified_header(token)
    jwks = json.loads(DEV_JWKS.read_text())
    assert header["alg"] == "ES256"
    assert header["kid"] == jwks["keys"][0]["kid"] == "dev-2026-11"
    key = jwt.PyJWK(jwks["keys"][0]).key
    claims = jwt.decode(
        token, key, algorithms=["ES256"], audience=DEFAULT_AUDIENCE, issuer=DEFAULT_ISSUER
    )
    assert claims["sub"] == "alice" and claims["roles"] == ["analyst"]
    assert claims["exp"] - claims["iat"] == 600 and claims["nbf"] == claims["iat"]
    assert len(claims["jti"]) == 32


def test_dev_token_refused_in_prod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USDCARB_ENV", "prod")
    with pytest.raises(DevTokenRefused):
        mint_dev_token("alice", ["analyst"])
    result = subprocess.run(
        [sys.executable, "-m", "usdcarb.gateway.devtoken", "--role", "analyst"],
        capture_output=True,
        text=True,
        check=False,
        env=child_env(USDCARB_ENV="prod"),
    )
    assert result.returncode == 2 and not result.stdout
    assert "USDCARB_ENV" in result.stderr


def test_dev_token_cli_prints_a_token_in_test_env() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "usdcarb.gateway.devtoken",
            "--role",
            "trader",
            "--sub",
            "bob",
            "--ttl",
            "60",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=child_env(USDCARB_ENV="test"),
    )
    payload = result.stdout.strip().split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert (claims["sub"], claims["roles"], claims["exp"] - claims["iat"]) == (
        "bob",
        ["trader"],
        60,
    )
