"""The monitoring files for Compose and Kubernetes: Prometheus and Alertmanager configs
pass their own checkers, the kustomization renders the dashboards, rules and
provisioning as ConfigMaps, and Compose provisions Grafana from the same files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from usdcarb.observability import monitoring

ROOT = Path(__file__).resolve().parents[2]
MON = ROOT / "deploy" / "monitoring"
pytestmark = pytest.mark.unit


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)


def test_compose_prometheus_config_and_alertmanager_config_are_valid() -> None:
    result = _run(monitoring.binary("promtool"), "check", "config",
                  "deploy/compose/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    for config_file in ("alertmanager.yml", "alertmanager-k8s.yml"):  # Compose, Kubernetes
        result = _run(monitoring.binary("amtool"), "check-config",
                      f"deploy/monitoring/alertmanager/{config_file}")
        assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((ROOT / "deploy/compose/prometheus.yml").read_text())
    assert {j["job_name"] for j in config["scrape_configs"]} >= {
        "identity", "strategy", "validation", "ingestion", "backtest", "notification",
        "ratelimit"}


def test_compose_provisions_grafana_from_the_generated_dashboards() -> None:
    compose = yaml.safe_load((ROOT / "deploy/compose/compose.yaml").read_text())
    grafana = compose["services"]["grafana"]
    assert "../monitoring/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert ("../monitoring/grafana/dashboards:/var/lib/grafana/dashboards/usdcarb:ro"
            in grafana["volumes"])
    assert "../monitoring/prometheus/rules:/etc/prometheus/rules:ro" in \
        compose["services"]["prometheus"]["volumes"]
    provider = yaml.safe_load((MON / "grafana/provisioning/dashboards/usdcarb.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/usdcarb"
    source = yaml.safe_load((MON / "grafana/provisioning/datasources/usdcarb.yaml").read_text())
    assert source["datasources"][0]["type"] == "prometheus"


def test_the_kustomization_renders_dashboards_rules_and_provisioning() -> None:
    kustomize = shutil.which("kustomize") or str(ROOT / ".tools/bin/kustomize")
    if not Path(kustomize).exists():
        pytest.skip("kustomize not installed (make deploy-tools)")
    result = _run(kustomize, "build", "deploy/monitoring")
    assert result.returncode == 0, result.stderr
    maps = {d["metadata"]["name"]: d for d in yaml.safe_load_all(result.stdout)}
    boards = maps["usdcarb-grafana-dashboards"]
    assert boards["metadata"]["labels"] == {"grafana_dashboard": "1"}
    for path in (MON / "grafana/dashboards").glob("*.json"):
        assert json.loads(boards["data"][path.name]) == json.loads(path.read_text())
    assert set(maps["usdcarb-prometheus-rules"]["data"]) == {
        p.name for p in (MON / "prometheus/rules").glob("*.yml")}
    assert set(maps["usdcarb-grafana-provisioning"]["data"]) == {"datasources.yaml",
                                                                "dashboards.yaml"}
    assert "alertmanager.yml" in maps["usdcarb-alertmanager"]["data"]
