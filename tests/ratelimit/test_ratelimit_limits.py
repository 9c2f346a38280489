"""The limits file and the two configs made from it: Envoy's local buckets (api) and
envoyproxy/ratelimit's YAML (heavy, auth)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from usdcarb.gateway.config import GatewayConfig, render_envoy_config
from usdcarb.ratelimit import service
from usdcarb.ratelimit.limits import (
    DEFAULT_LIMITS_FILE,
    ConfigError,
    load_limits,
    parse_limits,
    service_config,
    tier_limits,
)

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
LIMITS = parse_limits({
    "api": {"default": {"requests_per_unit": 1, "unit": "second"},
            "analyst": {"requests_per_unit": 5, "unit": "minute"}},
    "heavy": {"analyst": {"requests_per_unit": 2, "unit": "hour"}},
    "auth": {"requests_per_unit": 3, "unit": "minute"},
})


def test_every_tier_gets_its_own_limit_else_the_default_one() -> None:
    api = tier_limits(LIMITS.api)
    assert api["analyst"].requests_per_unit == 5 and api["admin"].name == "api-default"
    assert set(api) == {"default", "viewer", "analyst", "trader", "admin"}
    assert set(tier_limits(LIMITS.heavy)) == {"analyst"}  # no default: others unlimited


def test_the_rate_limit_service_gets_the_shared_budgets_with_named_limits() -> None:
    config = service_config(LIMITS)
    assert config["domain"] == "usdcarb"
    heavy, auth = config["descriptors"]
    assert (heavy["key"], heavy["value"]) == ("class", "heavy")
    (analyst,) = heavy["descriptors"]
    assert (analyst["key"], analyst["value"]) == ("tier", "analyst")
    assert analyst["descriptors"] == [{"key": "sub", "rate_limit": {
        "unit": "hour", "requests_per_unit": 2, "name": "heavy-analyst"}}]
    assert auth["descriptors"] == [{"key": "remote_address", "rate_limit": {
        "unit": "minute", "requests_per_unit": 3, "name": "auth"}}]


def test_the_service_config_is_written_atomically_where_the_service_watches(
        tmp_path: Path) -> None:
    path = service.write_config(LIMITS, tmp_path)
    assert path == tmp_path / "ratelimit" / "config" / "usdcarb.yaml"
    assert yaml.safe_load(path.read_text()) == service_config(LIMITS)
    assert [p.name for p in path.parent.iterdir()] == ["usdcarb.yaml"]
    env = service.environment(runtime_root=tmp_path, redis_url="redis://127.0.0.1:6390/0",
                              grpc_port=1, http_port=2, debug_port=3, metrics_port=4)
    assert env["REDIS_URL"] == "127.0.0.1:6390" and env["USE_PROMETHEUS"] == "true"
    assert env["PROMETHEUS_ADDR"] == "127.0.0.1:4" and env["RUNTIME_IGNOREDOTFILES"] == "true"


def _local(cfg: GatewayConfig) -> dict[str, Any]:
    bootstrap = render_envoy_config(cfg, base_dir=REPO)
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    (local,) = [f["typed_config"] for f in hcm["typed_config"]["http_filters"]
                if f["name"] == "envoy.filters.http.local_ratelimit"]
    return dict(local)


def test_envoy_keeps_a_bucket_per_subject_and_tier_in_a_bounded_lru() -> None:
    local = _local(GatewayConfig(limits=LIMITS, max_dynamic_descriptors=777))
    assert local["max_dynamic_descriptors"] == 777
    by_tier = {d["entries"][0]["value"]: d for d in local["descriptors"]}
    assert by_tier["analyst"]["entries"] == [{"key": "tier", "value": "analyst"}, {"key": "sub"}]
    assert by_tier["analyst"]["token_bucket"] == {
        "max_tokens": 5, "tokens_per_fill": 5, "fill_interval": "60s"}
    assert by_tier["admin"]["token_bucket"]["fill_interval"] == "1s"  # the default tier
    keys = [a["request_headers"]["descriptor_key"] for a in local["rate_limits"][0]["actions"]]
    assert keys == ["tier", "sub"] and "local_cluster_rate_limit" not in local
    shared = _local(GatewayConfig(limits=LIMITS, local_cluster="gateway.ns.svc:8080"))
    assert shared["local_cluster_rate_limit"] == {}


def test_a_malformed_limits_file_is_refused_with_the_field_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"api-viewer\.unit"):
        parse_limits({"api": {"viewer": {"requests_per_unit": 1, "unit": "fortnight"}}})
    with pytest.raises(ConfigError, match="roles"):
        parse_limits({"api": {"root": {"requests_per_unit": 1, "unit": "second"}}})
    with pytest.raises(ConfigError, match="requests_per_unit and unit"):
        parse_limits({"auth": {"requests_per_unit": 1, "unit": "second", "burst": 3}})
    bad = tmp_path / "limits.yaml"
    bad.write_text("api: [not, a, mapping")
    with pytest.raises(ConfigError, match="expected YAML"):
        load_limits(bad)
    assert load_limits(DEFAULT_LIMITS_FILE).auth is not None
