"""The Prometheus rules in the repo are valid and every alert is unit-tested by promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from usdcarb.observability import monitoring

PROM = Path(__file__).resolve().parents[2] / "deploy" / "monitoring" / "prometheus"
pytestmark = pytest.mark.unit


def _promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    return subprocess.run([monitoring.binary("promtool"), *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120, check=False)


def test_promtool_check_rules_accepts_every_rule_file() -> None:
    files = sorted(str(p) for p in (PROM / "rules").glob("*.yml"))
    assert files
    result = _promtool("check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = _promtool("test", "rules", "alerts_test.yml", cwd=PROM / "tests")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _alerts() -> set[str]:
    names = set()
    for path in (PROM / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {r["alert"] for r in group["rules"] if "alert" in r}
    return names


def test_every_alert_has_a_unit_test_that_sees_it_fire() -> None:
    tests = yaml.safe_load((PROM / "tests" / "alerts_test.yml").read_text())["tests"]
    fired = {case["alertname"] for t in tests for case in t.get("alert_rule_test", [])
             if case.get("exp_alerts")}
    assert _alerts() - fired == set()
    assert {"ServiceDown", "HighErrorRatio", "LatencySLOBurnFast", "LatencySLOBurnSlow",
            "BacktestQueueBackingUp", "IngestionLagHigh", "ValidationErrorSpike",
            "DeadLettersGrowing", "PostgresUnreachable", "RedisUnreachable",
            "PostgresReplicaLagHigh", "BackupTooOld"} <= _alerts()


def test_test_stacks_shorten_every_for_duration_and_nothing_else(tmp_path: Path) -> None:
    copied = monitoring.copy_rules(tmp_path, 0.5)
    assert {p.name for p in copied} == {p.name for p in (PROM / "rules").glob("*.yml")}
    for path in copied:
        original = yaml.safe_load((PROM / "rules" / path.name).read_text())
        short = yaml.safe_load(path.read_text())
        for g0, g1 in zip(original["groups"], short["groups"], strict=True):
            for r0, r1 in zip(g0["rules"], g1["rules"], strict=True):
                assert r1.get("for") == ("500ms" if "for" in r0 else None)
                assert {k: v for k, v in r0.items() if k != "for"} == \
                    {k: v for k, v in r1.items() if k != "for"}
    result = _promtool("check", "rules", *(str(p) for p in copied))
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_targets_follow_the_process_list() -> None:
    class P:
        def __init__(self, extra: dict[str, object]) -> None:
            self.pid, self.port, self.extra = 1, 2, extra

    groups = monitoring.scrape_targets({
        "strategy": P({"metrics_port": 9101}), "postgres": P({}),
        "ratelimit": P({"metrics_port": 6070, "metrics_path": "/metrics"}),
        "envoy": P({"admin_port": 9901})})
    assert groups == [
        {"targets": ["127.0.0.1:9901"], "labels": {"job": "envoy",
                                                   "__metrics_path__": "/stats/prometheus"}},
        {"targets": ["127.0.0.1:6070"], "labels": {"job": "ratelimit",
                                                   "__metrics_path__": "/metrics"}},
        {"targets": ["127.0.0.1:9101"], "labels": {"job": "strategy",
                                                   "__metrics_path__": "/metrics"}},
    ]
