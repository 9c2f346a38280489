"""Alertmanager reaches the notification service's Alertmanager receiver outside the
devstack: in Kubernetes (rendered overlays + the monitoring kustomization) and in Compose.

The facts come from the code: the receiver's path (usdcarb.notification.alerts.PATH) and
the notification settings the containers are given.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from usdcarb.notification.alerts import PATH
from usdcarb.notification.main import NotificationSettings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "usdcarb"
ALERTMANAGER_SA = "cluster.local/ns/monitoring/sa/alertmanager"
K8S_TOKEN_DIR = "/etc/alertmanager/secrets/usdcarb-alert-token"  # alertmanagerSpec.secrets


def objects(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def notification_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                          ) -> NotificationSettings:
    """The settings the notification service builds from exactly these variables."""
    for key in [k for k in os.environ if k.startswith("USDCARB_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return NotificationSettings()


def k8s_settings(docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
                 ) -> NotificationSettings:
    """Notification's settings from its ConfigMap plus a value for each secretKeyRef."""
    env = dict(objects(docs, "ConfigMap")["notification-config"]["data"])
    (container,) = objects(docs, "Deployment")["notification"]["spec"]["template"]["spec"][
        "containers"]
    env |= {v["name"]: f"from-secret-{v['name'].lower()}" for v in container["env"]}
    return notification_settings(env, monkeypatch)


def webhook(config: dict[str, Any]) -> dict[str, Any]:
    (route_to,) = [r for r in config["receivers"] if r["name"] == config["route"]["receiver"]]
    (hook,) = route_to["webhook_configs"]
    return dict(hook)


def k8s_alertmanager(tool: Any) -> dict[str, Any]:
    """alertmanager.yml of the ConfigMap the monitoring kustomization renders."""
    out = subprocess.run([tool("kustomize"), "build", str(ROOT / "deploy/monitoring")],
                         check=True, capture_output=True, text=True).stdout
    maps = {d["metadata"]["name"]: d for d in yaml.safe_load_all(out) if d}
    config: dict[str, Any] = yaml.safe_load(maps["usdcarb-alertmanager"]["data"][
        "alertmanager.yml"])
    return config


def test_k8s_notification_serves_the_receiver_on_its_port_with_the_secret_token(
        docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    settings = k8s_settings(docs, monkeypatch)
    assert settings.alert_port > 0 and settings.alert_token_file is not None
    pod = objects(docs, "Deployment")["notification"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {"name": "alerts", "containerPort": settings.alert_port, "protocol": "TCP"} in \
        container["ports"]
    # The token file is in a read-only mount of a Secret volume, never a variable.
    (mount,) = [m for m in container["volumeMounts"]
                if settings.alert_token_file.parent == Path(m["mountPath"])]
    assert mount.get("readOnly") is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    secret = volume["secret"]
    assert {"path": settings.alert_token_file.name, "key": "token"} in [
        {"path": i["path"], "key": i["key"]} for i in secret["items"]]
    assert secret["defaultMode"] & 0o007 == 0, "the token must not be world-readable"
    assert not [v for v in container.get("env", []) if "ALERT" in v["name"]]
    assert not [d for d in docs if d["kind"] == "Secret"], "the token is never committed"
    # The Service exposes the port by an http- name: Istio then applies HTTP policy to it.
    ports = {p["port"]: p for p in objects(docs, "Service")["notification"]["spec"]["ports"]}
    assert ports[settings.alert_port]["name"].startswith("http-")
    assert ports[settings.alert_port]["targetPort"] == settings.alert_port


def test_k8s_mesh_admits_only_alertmanager_and_only_to_the_receiver(
        docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    port = k8s_settings(docs, monkeypatch).alert_port
    rules = objects(docs, "AuthorizationPolicy")["notification"]["spec"]["rules"]
    to_port = [r for r in rules if str(port) in r["to"][0]["operation"].get("ports", [])]
    assert len(to_port) == 1, "exactly one rule opens the receiver's port"
    (rule,) = to_port
    assert rule["from"] == [{"source": {"principals": [ALERTMANAGER_SA]}}]
    assert rule["to"] == [{"operation": {"ports": [str(port)], "methods": ["POST"],
                                         "paths": [PATH]}}]
    for other in rules:  # Alertmanager gets nothing else; nobody else gets the port
        if other is not rule:
            assert ALERTMANAGER_SA not in other["from"][0]["source"]["principals"]
            assert other["to"][0]["operation"].get("ports")
    # NetworkPolicy: Alertmanager pods of the monitoring namespace, on that port only.
    ingress = objects(docs, "NetworkPolicy")["notification-ingress"]["spec"]["ingress"]
    opened = [i for i in ingress if {"port": port, "protocol": "TCP"} in i["ports"]]
    assert opened == [{"from": [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "alertmanager"}}}],
        "ports": [{"port": port, "protocol": "TCP"}]}]
    # The VirtualService keeps requests to that port on it (its other routes go to gRPC).
    first = objects(docs, "VirtualService")["notification"]["spec"]["http"][0]
    assert first["match"] == [{"port": port}]
    assert [r["destination"]["port"]["number"] for r in first["route"]] == [port]


def test_k8s_alertmanager_config_posts_to_the_notification_service(
        docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, deploy_tool: Any) -> None:
    port = k8s_settings(docs, monkeypatch).alert_port
    hook = webhook(k8s_alertmanager(deploy_tool))
    url = urlsplit(hook["url"])
    assert url.scheme == "http"  # the sidecars do mutual TLS (PeerAuthentication STRICT)
    assert url.hostname == f"notification.{NAMESPACE}.svc.cluster.local"
    assert url.port == port and url.path == PATH
    assert hook["send_resolved"] is True
    auth = hook["http_config"]["authorization"]
    assert auth["type"] == "Bearer" and "credentials" not in auth
    assert auth["credentials_file"] == f"{K8S_TOKEN_DIR}/token"


def test_compose_alertmanager_posts_to_notification_with_the_shared_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    compose = yaml.safe_load((ROOT / "deploy/compose/compose.yaml").read_text())
    services = compose["services"]
    am, notification = services["alertmanager"], services["notification"]
    assert am["image"].startswith("${ALERTMANAGER_IMAGE:?")
    images = (ROOT / "deploy/docker/base-images.env").read_text()
    assert "ALERTMANAGER_IMAGE=docker.io/prom/alertmanager:v" in images
    assert "wget" in am["healthcheck"]["test"] and "/-/ready" in am["healthcheck"]["test"][-1]
    assert am["depends_on"]["notification"] == {"condition": "service_healthy"}
    # The mounted config is the repo's, and it names notification's receiver.
    (mount,) = [v for v in am["volumes"] if v.endswith(":/etc/alertmanager/alertmanager.yml:ro")]
    config_file = (ROOT / "deploy/compose" / mount.split(":", 1)[0]).resolve()
    assert config_file == ROOT / "deploy/monitoring/alertmanager/alertmanager.yml"
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in am["command"]
    hook = webhook(yaml.safe_load(config_file.read_text()))
    url = urlsplit(hook["url"])
    settings = notification_settings(notification["environment"], monkeypatch)
    assert url.hostname == "notification" and url.port == settings.alert_port
    assert url.path == PATH and url.scheme == ("http" if settings.plaintext else "https")
    # One Compose secret, mounted by both at /run/secrets/<name>, is the token file.
    token = hook["http_config"]["authorization"]["credentials_file"]
    secret = token.removeprefix("/run/secrets/")
    assert str(settings.alert_token_file) == token
    assert secret in am["secrets"] and secret in notification["secrets"]
    assert compose["secrets"][secret] == {"file": f"./secrets/{secret}"}
    assert f'put {secret} "$(random)"' in (ROOT / "deploy/compose/make-secrets.sh").read_text()
    # Prometheus sends its alerts to this Alertmanager.
    prom = yaml.safe_load((ROOT / "deploy/compose/prometheus.yml").read_text())
    targets = [t for a in prom["alerting"]["alertmanagers"]
               for c in a["static_configs"] for t in c["targets"]]
    assert targets == ["alertmanager:9093"]
