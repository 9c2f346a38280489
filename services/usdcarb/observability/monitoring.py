"""Prometheus and Alertmanager for a local stack, from Debian's packages, on loopback.

``Monitoring(root, settings).start(processes, notification=...)`` writes the two
configurations under ``<root>/monitoring``, starts ``prometheus`` and
``prometheus-alertmanager`` on free 127.0.0.1 ports and waits for both to be ready.

Scrape targets derive from the stack's process list: every process whose
``ProcessInfo.extra`` has a ``metrics_port`` becomes a target with ``job`` = its name
(path ``extra["metrics_path"]``, default ``/metrics``), and Envoy's admin port is scraped
at ``/stats/prometheus``. They live in a file_sd file that ``write_targets`` rewrites
whenever the list changes (Prometheus watches it), so a process joining the stack (the
Go rate-limit service, a replica) is scraped without a restart.

Rules come from ``deploy/monitoring/prometheus/rules`` in the repo. Alertmanager sends
every alert to the notification service's alert receiver (HTTPS with mutual TLS and a
bearer token, usdcarb.notification.alerts), which turns it into a domain event.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from usdcarb.devstack.ports import poll_http

REPO = Path(__file__).resolve().parents[3]
RULES_DIR = REPO / "deploy" / "monitoring" / "prometheus" / "rules"
PROMETHEUS = "prometheus"
# The notification service's Alertmanager webhook receiver (usdcarb.notification.alerts).
ALERT_PATH = "/alertmanager/alerts"
ALERTMANAGER = "prometheus-alertmanager"
READY_TIMEOUT_S = 30.0


class MonitoringError(RuntimeError):
    """Prometheus or Alertmanager could not be configured or started."""


class Process(Protocol):
    """What the stack records of a process (usdcarb.devstack.stack.ProcessInfo)."""

    pid: int
    port: int
    extra: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class MonitoringSettings:
    """Intervals of the local Prometheus and Alertmanager (tests shorten them all)."""

    scrape_interval_s: float = 5.0
    evaluation_interval_s: float = 5.0
    # Alertmanager: wait before the first notification of a group, between updates of a
    # group, and before repeating an unchanged one.
    group_wait_s: float = 5.0
    group_interval_s: float = 30.0
    repeat_interval_s: float = 4 * 3600.0
    # Seconds a firing alert must hold before Alertmanager considers it resolved when
    # Prometheus stops sending it (Prometheus resends every evaluation anyway).
    resolve_timeout_s: float = 60.0
    # Replace every rule's ``for:`` with this many seconds (None: the rules' own). Only
    # test stacks set it, to see an alert fire within seconds; the rules themselves are
    # unit-tested with their real durations by ``promtool test rules``.
    alert_for_override_s: float | None = None
    retention: str = "2d"


def binary(name: str) -> str:
    """Return the path of ``name`` (from Debian's packages), or fail saying how to get it."""
    path = shutil.which(name)
    if path is None:
        raise MonitoringError(f"expected {name} on PATH (make system installs Debian's "
                              f"prometheus and prometheus-alertmanager), got none")
    return path


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def scrape_targets(processes: Mapping[str, Process]) -> list[dict[str, Any]]:
    """Return the file_sd groups of the stack's processes: one per metrics endpoint."""
    groups: list[dict[str, Any]] = []
    for name, proc in sorted(processes.items()):
        port = proc.extra.get("metrics_port")
        if port:
            groups.append({"targets": [f"127.0.0.1:{port}"], "labels": {
                "job": name, "__metrics_path__": str(proc.extra.get("metrics_path", "/metrics"))}})
        admin = proc.extra.get("admin_port")
        if name == "envoy" and admin:
            groups.append({"targets": [f"127.0.0.1:{admin}"], "labels": {
                "job": "envoy", "__metrics_path__": "/stats/prometheus"}})
    return groups


_FOR = re.compile(r"^(\s*)for:\s*\S+\s*$", re.MULTILINE)


def copy_rules(dest: Path, override_s: float | None) -> list[Path]:
    """Copy the repo's rule files to ``dest`` (every ``for:`` shortened when asked)."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.yml"):
        old.unlink()
    copied = []
    for src in sorted(RULES_DIR.glob("*.yml")):
        text = src.read_text()
        if override_s is not None:
            text = _FOR.sub(lambda m: f"{m.group(1)}for: {_duration(override_s)}", text)
        target = dest / src.name
        target.write_text(text)
        copied.append(target)
    return copied


def prometheus_config(*, settings: MonitoringSettings, rules_dir: Path, targets_file: Path,
                      alertmanager_port: int, prometheus_port: int) -> dict[str, Any]:
    """Return Prometheus' configuration (as data; YAML is a superset of JSON)."""
    return {
        "global": {"scrape_interval": _duration(settings.scrape_interval_s),
                   "scrape_timeout": _duration(min(settings.scrape_interval_s, 10.0)),
                   "evaluation_interval": _duration(settings.evaluation_interval_s),
                   "external_labels": {"stack": "usdcarb-dev"}},
        "rule_files": [str(rules_dir / "*.yml")],
        "alerting": {"alertmanagers": [
            {"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]},
        "scrape_configs": [
            {"job_name": "usdcarb", "file_sd_configs": [{"files": [str(targets_file)]}]},
            {"job_name": "prometheus",
             "static_configs": [{"targets": [f"127.0.0.1:{prometheus_port}"]}]},
            {"job_name": "alertmanager",
             "static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]},
        ],
    }


@dataclass(frozen=True, kw_only=True)
class AlertReceiver:
    """Where Alertmanager posts: the notification service's alert receiver."""

    url: str
    token_file: Path
    # Mutual TLS to the receiver (None: plain HTTP, on a plaintext stack).
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str = "notification"


def alertmanager_config(settings: MonitoringSettings, receiver: AlertReceiver) -> dict[str, Any]:
    """Return Alertmanager's configuration: every alert to the notification service."""
    http: dict[str, Any] = {"authorization": {"type": "Bearer",
                                              "credentials_file": str(receiver.token_file)}}
    if receiver.ca_file is not None:
        http["tls_config"] = {"ca_file": str(receiver.ca_file),
                              "cert_file": str(receiver.cert_file),
                              "key_file": str(receiver.key_file),
                              "server_name": receiver.server_name}
    return {
        "global": {"resolve_timeout": _duration(settings.resolve_timeout_s)},
        "route": {"receiver": "notification", "group_by": ["alertname", "job"],
                  "group_wait": _duration(settings.group_wait_s),
                  "group_interval": _duration(settings.group_interval_s),
                  "repeat_interval": _duration(settings.repeat_interval_s)},
        # A dependency down makes every service's dependency alert fire: page once.
        "inhibit_rules": [{"source_matchers": ["alertname=~\"PostgresUnreachable|RedisUnreachable\""],
                           "target_matchers": ["alertname=\"HighErrorRatio\""]}],
        "receivers": [{"name": "notification", "webhook_configs": [
            {"url": receiver.url, "send_resolved": True, "max_alerts": 50,
             "http_config": http}]}],
    }


def new_token(path: Path) -> str:
    """Write a fresh random bearer token (mode 0600) for Alertmanager → notification."""
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(token)
    return token


def write_targets(path: Path, processes: Mapping[str, Process]) -> None:
    """Rewrite the file_sd targets atomically (Prometheus picks the change up)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(scrape_targets(processes), indent=1))
    tmp.replace(path)


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path,
               timeout_s: float = READY_TIMEOUT_S) -> None:
    """Wait until ``url`` (a /-/ready endpoint) answers 200."""
    if poll_http(url, lambda status, _: status == 200, timeout_s=timeout_s,
                 alive=lambda: proc.poll() is None):
        return
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.exists() else ""
    raise MonitoringError(f"expected {url} ready, got exit {proc.poll()}:\n{tail}")


def api_get(base: str, path: str, **params: str) -> Any:
    """GET a Prometheus/Alertmanager JSON API path and return its ``data``."""
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{base}{path}{'?' + query if query else ''}", timeout=10) as r:
        body = json.loads(r.read())
    if isinstance(body, dict) and body.get("status") == "success":
        return body.get("data")
    return body

