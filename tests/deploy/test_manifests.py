"""Contracts of the rendered Kubernetes and Istio manifests against the code.

Every overlay is rendered with the pinned kustomize (conftest); the facts are read from the
services themselves: ports, settings, secrets, grants, methods, the backtest job queue.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from usdcarb.backtest.jobs import GROUP
from usdcarb.backtest.progress import Channels
from usdcarb.gateway.api import load_services
from usdcarb.gateway.config import DEFAULT_AUDIENCE, DEFAULT_ISSUER, DEFAULT_UPSTREAMS
from usdcarb.platform.authz import SERVICE_GRANTS

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {s.short_name: s for s in load_services(ROOT / "gen/descriptor/usdcarb.binpb")}
NAMESPACE = "usdcarb"
INGRESS_SA = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
ALERTMANAGER_SA = "cluster.local/ns/monitoring/sa/alertmanager"  # tests/deploy/test_alert_wiring


def objects(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def generator() -> Any:
    """deploy/tools/gen_manifests.py as a module (deploy/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gen_manifests",
                                                  ROOT / "deploy/tools/gen_manifests.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def container(dep: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = dep["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"expected one container, got {len(containers)}"
    return containers[0]


def config(docs: list[dict[str, Any]], service: str) -> dict[str, str]:
    data: dict[str, str] = objects(docs, "ConfigMap")[f"{service}-config"]["data"]
    return data


def grpc_port(service: str) -> int:
    return int(DEFAULT_UPSTREAMS[service].rsplit(":", 1)[1])


def test_every_proto_service_has_deployment_service_probes_and_pdb(
        docs: list[dict[str, Any]]) -> None:
    deployments, services = objects(docs, "Deployment"), objects(docs, "Service")
    pdbs = objects(docs, "PodDisruptionBudget")
    for name in SERVICES:
        dep = deployments[name]
        c = container(dep)
        assert c["command"] == ["python", "-m", f"usdcarb.{name}.main"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert probe in c, f"{name}: expected a {probe}, got none"
        assert c["readinessProbe"]["grpc"]["port"] == grpc_port(name)
        assert c["startupProbe"]["grpc"]["port"] == grpc_port(name)
        svc = services[name]
        assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"][
            "labels"].items()
        grpc = [p for p in svc["spec"]["ports"] if p["name"].startswith("grpc-")]
        assert len(grpc) == 1, f"{name}: expected one grpc- named port, got {svc['spec']['ports']}"
        assert pdbs[name]["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"][
            "matchLabels"]


def test_container_ports_are_the_ports_the_code_listens_on(docs: list[dict[str, Any]]) -> None:
    deployments, services = objects(docs, "Deployment"), objects(docs, "Service")
    for name in SERVICES:
        env = config(docs, name)
        prefix = f"USDCARB_{name.upper()}_"
        port = int(env[prefix + "GRPC_PORT"])
        assert port == grpc_port(name), f"{name}: expected the gateway's upstream port"
        assert env[prefix + "GRPC_HOST"] == "0.0.0.0"
        ports = {p["name"]: p["containerPort"] for p in container(deployments[name])["ports"]}
        expected = {"grpc": port, "metrics": int(env[prefix + "METRICS_PORT"])}
        if prefix + "ALERT_PORT" in env:  # notification's Alertmanager receiver
            expected["alerts"] = int(env[prefix + "ALERT_PORT"])
        assert ports == expected
        by_name = {p["name"]: p for p in services[name]["spec"]["ports"]}
        assert by_name[f"grpc-{name}"]["targetPort"] == port
        assert by_name["http-metrics"]["targetPort"] == int(env[prefix + "METRICS_PORT"])
        if "alerts" in expected:
            assert by_name["http-alerts"]["targetPort"] == expected["alerts"]


def test_peer_addresses_name_existing_services(docs: list[dict[str, Any]]) -> None:
    services = objects(docs, "Service")
    for name in SERVICES:
        for key, value in config(docs, name).items():
            if key.endswith("_ADDRESS"):
                host, port = value.rsplit(":", 1)
                target = host.split(".")[0]
                assert host == f"{target}.{NAMESPACE}.svc.cluster.local"
                assert int(port) in {p["port"] for p in services[target]["spec"]["ports"]}


def test_no_pod_runs_as_root_or_writes_its_image(docs: list[dict[str, Any]]) -> None:
    for name, dep in objects(docs, "Deployment").items():
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert "limits" in c["resources"] and "requests" in c["resources"], name


def test_backtest_hands_off_through_a_memory_backed_dev_shm(docs: list[dict[str, Any]]) -> None:
    # usdcarb.backtest.handoff maps market data and curves through /dev/shm; a container's
    # own /dev/shm is 64 MB, too small for a long run's frame.
    dep = objects(docs, "Deployment")["backtest"]
    pod = dep["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in container(dep)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    shm = volumes[mounts["/dev/shm"]]["emptyDir"]
    assert shm["medium"] == "Memory"
    limit = container(dep)["resources"]["limits"]["memory"]
    assert int(shm["sizeLimit"].removesuffix("Gi")) < int(limit.removesuffix("Gi"))


def test_secrets_are_referenced_never_inlined(docs: list[dict[str, Any]]) -> None:
    assert not [d for d in docs if d["kind"] == "Secret"], "expected no Secret in the manifests"
    for name, dep in objects(docs, "Deployment").items():
        for var in container(dep).get("env", []):
            assert "value" not in var, f"{name}: {var['name']} has an inline value"
            assert var["valueFrom"]["secretKeyRef"]["name"] == f"usdcarb-{name}"
    gen = generator()
    for name, cls in gen.SETTINGS.items():
        secret = {f for f, info in cls.model_fields.items() if info.annotation is SecretStr}
        secret.add("redis_url")  # a managed Redis URL carries its password
        prefix = f"USDCARB_{name.upper()}_"
        inline = {k.removeprefix(prefix).lower() for k in config(docs, name)} & secret
        assert not inline, f"{name}: secrets in the ConfigMap: {sorted(inline)}"


def test_prod_config_and_secret_refs_satisfy_the_prod_settings(
        rendered: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each service's settings accept exactly what the prod Deployment provides: the
    ConfigMap plus a value for every secretKeyRef (nothing left at a dev default)."""
    settings_classes: dict[str, Any] = generator().SETTINGS
    docs = rendered["prod"]
    deployments = objects(docs, "Deployment")
    for name, cls in settings_classes.items():
        for key in [k for k in list(os.environ) if k.startswith("USDCARB_")]:
            monkeypatch.delenv(key)
        for key, value in config(docs, name).items():
            monkeypatch.setenv(key, value)
        for var in container(deployments[name])["env"]:
            monkeypatch.setenv(var["name"], f"from-secret-{var['name'].lower()}")
        settings = cls()
        assert settings.env == "prod"
        assert settings.plaintext and settings.sidecar_mtls
        assert settings.fields_with_dev_defaults() == []


def test_authorization_policies_name_existing_service_accounts(
        docs: list[dict[str, Any]]) -> None:
    accounts = {f"cluster.local/ns/{NAMESPACE}/sa/{n}" for n in objects(docs, "ServiceAccount")}
    for name, ap in objects(docs, "AuthorizationPolicy").items():
        for rule in ap["spec"].get("rules", []):
            for source in rule["from"]:
                for p in source["source"]["principals"]:
                    assert p in accounts or p in (INGRESS_SA, ALERTMANAGER_SA), \
                        f"{name}: unknown principal {p}"
    assert objects(docs, "AuthorizationPolicy")["allow-nothing"]["spec"] == {}


def test_authorization_policies_grant_exactly_the_service_grants(
        docs: list[dict[str, Any]]) -> None:
    aps = objects(docs, "AuthorizationPolicy")
    for caller, methods in SERVICE_GRANTS.items():
        for method in methods:
            target = next(s for s, d in SERVICES.items() if method.startswith(d.full_name + "/"))
            rules = aps[target]["spec"]["rules"]
            assert any(f"cluster.local/ns/{NAMESPACE}/sa/{caller}" in r["from"][0]["source"][
                "principals"] and f"/{method}" in r["to"][0]["operation"].get("paths", [])
                for r in rules), f"{caller} -> {method} not allowed"
    for target, ap in aps.items():
        for rule in ap["spec"].get("rules", []):
            principals = rule["from"][0]["source"]["principals"]
            paths = rule["to"][0]["operation"].get("paths", [])
            if any(p.endswith("/sa/gateway") or p == INGRESS_SA for p in principals):
                continue
            assert all(not p.endswith("*") for p in paths), f"{target}: wildcard for services"
    identity = aps["identity"]["spec"]["rules"][0]["to"][0]["operation"]
    assert "/usdcarb.v1.IdentityService/IssueServiceToken" in identity["notPaths"]


def test_mesh_mtls_strict_and_traffic_rules(docs: list[dict[str, Any]]) -> None:
    peer = objects(docs, "PeerAuthentication")["default"]
    assert peer["spec"]["mtls"]["mode"] == "STRICT" and "selector" not in peer["spec"]
    hosts = {f"{n}.{NAMESPACE}.svc.cluster.local" for n in objects(docs, "Service")}
    rules = {d["spec"]["host"] for d in objects(docs, "DestinationRule").values()}
    assert {f"{n}.{NAMESPACE}.svc.cluster.local" for n in SERVICES} <= rules <= hosts
    for name, svc in SERVICES.items():
        vs = objects(docs, "VirtualService")[name]
        assert vs["spec"]["hosts"] == [f"{name}.{NAMESPACE}.svc.cluster.local"]
        for route in vs["spec"]["http"]:
            if route["name"] == "alerts":  # notification's Alertmanager port (no gRPC)
                continue
            paths = [m["uri"]["exact"].rsplit("/", 1)[1] for m in route.get("match", [])]
            methods = [m for m in svc.methods if m.name in paths]
            if route["retries"]["attempts"]:
                assert methods and all(
                    not m.server_streaming and any(r.method == "GET" for r in m.http_rules)
                    for m in methods), f"{name}: retries on a non-idempotent method"
            if any(m.server_streaming or m.client_streaming for m in methods):
                assert route["retries"]["attempts"] == 0 and route["timeout"] == "0s"
        streams = {m.name for m in svc.methods if m.server_streaming}
        routed = {m["uri"]["exact"].rsplit("/", 1)[1] for r in vs["spec"]["http"]
                  if r["name"] == "streams" for m in r["match"]}
        assert routed == streams, f"{name}: every stream needs the no-timeout route"


def test_request_authentication_matches_the_gateway(docs: list[dict[str, Any]]) -> None:
    (rule,) = objects(docs, "RequestAuthentication")["identity-jwt"]["spec"]["jwtRules"]
    assert rule["issuer"] == DEFAULT_ISSUER and rule["audiences"] == [DEFAULT_AUDIENCE]
    assert rule["forwardOriginalToken"] is True
    jwks = next(m for m in SERVICES["identity"].methods if m.name == "GetJwks")
    assert rule["jwksUri"] == (f"http://gateway.{NAMESPACE}.svc.cluster.local:8080"
                               f"{jwks.http_rules[0].template}")


def test_backtest_scales_on_its_job_stream(docs: list[dict[str, Any]]) -> None:
    scaled = objects(docs, "ScaledObject")["backtest"]["spec"]
    streams = [t for t in scaled["triggers"] if t["type"] == "redis-streams"]
    assert {t["metadata"]["stream"] for t in streams} == {Channels().jobs}
    assert {t["metadata"]["consumerGroup"] for t in streams} == {GROUP}
    assert any("lagCount" in t["metadata"] for t in streams)
    assert any("pendingEntriesCount" in t["metadata"] for t in streams)
    assert scaled["minReplicaCount"] >= 1
    assert "backtest" not in objects(docs, "HorizontalPodAutoscaler")
    target = scaled["scaleTargetRef"]
    assert target["name"] == "backtest"
    assert target["kind"] in {d["kind"] for d in docs if d["metadata"]["name"] == "backtest"}


def test_network_policies_admit_the_gateway_and_named_callers(
        docs: list[dict[str, Any]]) -> None:
    policies = objects(docs, "NetworkPolicy")
    assert policies["default-deny-ingress"]["spec"]["podSelector"] == {}

    def admitted(target: str) -> set[str]:
        peers = policies[f"{target}-ingress"]["spec"]["ingress"][0]["from"]
        return {p["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                for p in peers if "namespaceSelector" not in p}

    for name in SERVICES:
        assert "gateway" in admitted(name)
    for caller, methods in SERVICE_GRANTS.items():
        for method in methods:
            target = next(s for s, d in SERVICES.items() if method.startswith(d.full_name + "/"))
            assert caller in admitted(target)


def test_every_namespaced_object_is_in_the_namespace(docs: list[dict[str, Any]]) -> None:
    for d in docs:
        if d["kind"] != "Namespace":
            assert d["metadata"].get("namespace") == NAMESPACE, d["metadata"]["name"]


def test_prod_rolls_out_blue_green_with_analysis(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["prod"]
    rollouts, services = objects(docs, "Rollout"), objects(docs, "Service")
    templates = objects(docs, "AnalysisTemplate")
    hpas = objects(docs, "HorizontalPodAutoscaler")
    for name, dep in objects(docs, "Deployment").items():
        assert dep["spec"]["replicas"] == 0, "the Rollout runs the pods"
        bg = rollouts[name]["spec"]["strategy"]["blueGreen"]
        assert rollouts[name]["spec"]["workloadRef"]["name"] == name
        assert bg["activeService"] in services and bg["previewService"] in services
        for gate in ("prePromotionAnalysis", "postPromotionAnalysis"):
            assert all(t["templateName"] in templates for t in bg[gate]["templates"])
        if name in hpas:
            assert hpas[name]["spec"]["scaleTargetRef"]["kind"] == "Rollout"
    assert objects(docs, "ScaledObject")["backtest"]["spec"]["scaleTargetRef"]["kind"] == \
        "Rollout"


def settings_fields(service: str) -> set[str]:
    gen = generator()
    if service == "ratelimit":  # envoyproxy/ratelimit (Go) reads plain variable names
        return set(gen.ratelimit_workload()[1]["data"]) | {"REDIS_URL", "REDIS_AUTH"}
    cls = gen.SETTINGS[service]
    return {f"USDCARB_{service.upper()}_{name.upper()}" for name in cls.model_fields}


def test_every_variable_the_manifests_set_is_a_setting(docs: list[dict[str, Any]]) -> None:
    """Settings ignore unknown variables, so a misspelt one would silently do nothing."""
    for name, dep in objects(docs, "Deployment").items():
        if name == "gateway":
            continue
        known = settings_fields(name)
        unknown = set(config(docs, name)) - known
        unknown |= {v["name"] for v in container(dep).get("env", [])} - known
        assert not unknown, f"{name}: not settings of the service: {sorted(unknown)}"


def test_every_variable_compose_sets_is_a_setting() -> None:
    compose = yaml.safe_load((ROOT / "deploy/compose/compose.yaml").read_text())
    for name, svc in compose["services"].items():
        command = svc.get("command", [])
        if command[:2] != ["python", "-m"] or not command[2].endswith(".main"):
            continue
        service = command[2].split(".")[1]
        known = settings_fields(service)
        given = set(svc.get("environment", {})) | {s for s in svc.get("secrets", [])
                                                   if s.startswith("USDCARB_")}
        assert given - known == set(), f"{name}: not settings: {sorted(given - known)}"
        assert f"USDCARB_{service.upper()}_GRPC_PORT" in given
