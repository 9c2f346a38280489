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
    TIERS,
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


def test_the_service_settings_do_not_depend_on_the_callers_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The manifests are generated from these settings: the same everywhere they are made.
    def settings() -> dict[str, str]:
        return service.environment(runtime_root=tmp_path, redis_url="redis://127.0.0.1:6390/0",
                                   grpc_port=1, http_port=2, debug_port=3, metrics_port=4)

    monkeypatch.delenv("GOMAXPROCS", raising=False)
    unset = settings()
    monkeypatch.setenv("GOMAXPROCS", "8")
    assert settings() == unset and unset["GOMAXPROCS"] == "1"


def _locals(cfg: GatewayConfig) -> dict[str, dict[str, Any]]:
    """Return the per-tier local_ratelimit filters of ``cfg``'s listener, by tier."""
    bootstrap = render_envoy_config(cfg, base_dir=REPO)
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    prefix = "usdcarb.local_ratelimit."
    return {f["name"].removeprefix(prefix): f for f in hcm["typed_config"]["http_filters"]
            if f["name"].startswith(prefix)}


def test_envoy_keeps_a_bucket_per_subject_and_tier_in_a_bounded_lru() -> None:
    filters = _locals(GatewayConfig(limits=LIMITS, max_dynamic_descriptors=777))
    assert sorted(filters) == sorted(TIERS)
    analyst = filters["analyst"]["typed_config"]
    assert analyst["max_dynamic_descriptors"] == 777
    (bucket,) = analyst["descriptors"]
    assert bucket["entries"] == [{"key": "tier", "value": "analyst"}, {"key": "sub"}]
    assert bucket["token_bucket"] == {"max_tokens": 5, "tokens_per_fill": 5,
                                      "fill_interval": "60s"}
    admin = filters["admin"]["typed_config"]
    assert admin["descriptors"][0]["token_bucket"]["fill_interval"] == "1s"  # the default tier
    # Only the tier's own requests get a descriptor, per subject.
    tier_match, sub = analyst["rate_limits"][0]["actions"]
    assert tier_match["header_value_match"]["headers"] == [
        {"name": "x-usdcarb-tier", "string_match": {"exact": "analyst"}}]
    assert sub["request_headers"]["descriptor_key"] == "sub"
    assert "local_cluster_rate_limit" not in analyst
    shared = _locals(GatewayConfig(limits=LIMITS, local_cluster="gateway.ns.svc:8080"))
    assert shared["analyst"]["typed_config"]["local_cluster_rate_limit"] == {}


def test_per_caller_limits_come_from_watched_files_with_the_same_default(
        tmp_path: Path) -> None:
    service.write_config(LIMITS, tmp_path, max_dynamic_descriptors=777)
    folder = service.envoy_dir(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{t}.yaml" for t in TIERS)
    cfg = GatewayConfig(limits=LIMITS, max_dynamic_descriptors=777, local_limits_dir=str(folder))
    for tier, spec in _locals(cfg).items():
        discovery = spec["config_discovery"]
        source = discovery["config_source"]["path_config_source"]
        assert source == {"path": f"{folder}/{tier}.yaml", "watched_directory": {"path": str(folder)}}
        assert discovery["apply_default_config_without_warming"] is True
        (resource,) = yaml.safe_load((folder / f"{tier}.yaml").read_text())["resources"]
        assert resource["name"] == spec["name"]
        assert resource["typed_config"] == discovery["default_config"]
    # Unchanged files are left alone (their buckets keep their tokens); changed ones replaced.
    before = {p.name: p.stat().st_ino for p in folder.iterdir()}
    service.write_config(LIMITS, tmp_path, max_dynamic_descriptors=777)
    assert {p.name: p.stat().st_ino for p in folder.iterdir()} == before
    service.write_config(parse_limits({"api": {"analyst": {"requests_per_unit": 9,
                                                           "unit": "hour"}}}), tmp_path,
                         max_dynamic_descriptors=777)
    after = {p.name: p.stat().st_ino for p in folder.iterdir()}
    assert after["analyst.yaml"] != before["analyst.yaml"]
    assert "9 requests per 3600 s" in (folder / "analyst.yaml").read_text()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


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
