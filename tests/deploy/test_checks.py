"""The offline checks themselves catch defects (a check that cannot fail proves nothing),
and the artefacts outside the manifests keep their promises: the gateway's Kubernetes
config, the images, the Compose file."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from usdcarb.gateway.config import DEFAULT_UPSTREAMS

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "deploy"


def load(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def schemas() -> Path:
    done = sorted(CACHE.glob("schemas-*/.done"))
    if not done:
        pytest.fail(f"expected kubeconform schemas under {CACHE} (run `make deploy-check`)")
    return done[-1].parent


def kubeconform(deploy_tool: Any, tmp_path: Path,
                doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "doc.yaml"
    path.write_text(yaml.safe_dump(doc))
    root = schemas()
    return subprocess.run(
        [deploy_tool("kubeconform"), "-strict", "-summary",
         "-schema-location", f"{root}/k8s/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
         "-schema-location",
         f"{root}/crds/{{{{ .Group }}}}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json",
         str(path)], capture_output=True, text=True)


def rendered_object(rendered: dict[str, list[dict[str, Any]]], kind: str,
                    name: str) -> dict[str, Any]:
    return copy.deepcopy(next(d for d in rendered["prod"]
                              if d["kind"] == kind and d["metadata"]["name"] == name))


@pytest.mark.parametrize(("kind", "name", "path"), [
    ("Deployment", "strategy", ("spec", "template", "spec", "containers", 0)),
    ("VirtualService", "strategy", ("spec",)),
    ("AuthorizationPolicy", "strategy", ("spec",)),
    ("ScaledObject", "backtest", ("spec",)),
    ("Rollout", "strategy", ("spec", "strategy", "blueGreen")),
])
def test_kubeconform_refuses_an_unknown_field(
        rendered: dict[str, list[dict[str, Any]]], deploy_tool: Any, tmp_path: Path,
        kind: str, name: str, path: tuple[Any, ...]) -> None:
    doc = rendered_object(rendered, kind, name)
    assert kubeconform(deploy_tool, tmp_path, doc).returncode == 0
    node: Any = doc
    for step in path:
        node = node[step]
    node["retriez"] = 3
    result = kubeconform(deploy_tool, tmp_path, doc)
    assert result.returncode != 0 and "retriez" in result.stdout, result.stdout


def test_kubeconform_refuses_a_wrong_type(rendered: dict[str, list[dict[str, Any]]],
                                          deploy_tool: Any, tmp_path: Path) -> None:
    doc = rendered_object(rendered, "DestinationRule", "strategy")
    doc["spec"]["trafficPolicy"]["connectionPool"]["tcp"]["maxConnections"] = "many"
    assert kubeconform(deploy_tool, tmp_path, doc).returncode != 0


def test_gateway_kubernetes_config_passes_envoy_validate(
        rendered: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    # The per-caller limits from the gateway-limits ConfigMap, where Envoy watches them.
    limits = rendered_object(rendered, "ConfigMap", "gateway-limits")
    folder = tmp_path / "limits"
    folder.mkdir()
    for name, text in limits["data"].items():
        (folder / name).write_text(text)
    mount = rendered_object(rendered, "Deployment", "gateway")["spec"]["template"]["spec"][
        "containers"][0]["volumeMounts"]
    assert {"name": "limits", "mountPath": "/etc/usdcarb/limits", "readOnly": True} in mount
    out = tmp_path / "envoy.yaml"
    subprocess.run(["sh", str(ROOT / "deploy/gateway/render.sh"), "k8s",
                    str(ROOT / "gen/descriptor/usdcarb.binpb"), str(out),
                    str(ROOT / ".venv/bin/python")], check=True, capture_output=True,
                   env={**os.environ, "USDCARB_GATEWAY_LIMITS_DIR": str(folder)})
    result = subprocess.run([str(ROOT / ".venv/bin/envoy"), "--mode", "validate", "-c", str(out),
                             "--log-level", "critical"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"configuration '{out}' OK" in result.stdout
    config = yaml.safe_load(out.read_text())
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    for name, address in DEFAULT_UPSTREAMS.items():
        endpoint = clusters[name]["load_assignment"]["endpoints"][0]["lb_endpoints"][0][
            "endpoint"]["address"]["socket_address"]
        assert endpoint == {"address": f"{name}.usdcarb.svc.cluster.local",
                            "port_value": int(address.rsplit(":", 1)[1])}
        assert clusters[name]["type"] == "STRICT_DNS"
    assert "ratelimit" in clusters
    listener = config["static_resources"]["listeners"][0]["address"]["socket_address"]
    assert listener == {"address": "0.0.0.0", "port_value": 8080}
    # Each tier's filter: its file in the ConfigMap, the same config as the image's default.
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    local = [f for f in hcm["typed_config"]["http_filters"] if "config_discovery" in f]
    assert local and len(local) == len(limits["data"])
    for spec in local:
        discovery = spec["config_discovery"]
        path = Path(discovery["config_source"]["path_config_source"]["path"])
        (resource,) = yaml.safe_load((folder / path.name).read_text())["resources"]
        assert resource["name"] == spec["name"]
        assert resource["typed_config"] == discovery["default_config"]
        assert resource["typed_config"]["local_cluster_rate_limit"] == {}


def test_base_images_are_pinned_versions() -> None:
    lines = [line for line in (ROOT / "deploy/docker/base-images.env").read_text().splitlines()
             if line and not line.startswith("#")]
    assert len(lines) >= 5
    for line in lines:
        _, image = line.split("=", 1)
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert re.search(r"\d+\.\d+", tag) and "latest" not in tag, f"unpinned: {line}"


def test_services_image_is_non_root_with_a_grpc_healthcheck() -> None:
    text = (ROOT / "deploy/docker/services.Dockerfile").read_text()
    final = text.rsplit("\nFROM ", 1)[1]
    assert re.search(r"^USER 10001:10001$", final, re.M)
    assert re.search(r"^HEALTHCHECK .*\n.*healthcheck\.py", final, re.M)
    assert "python -m usdcarb.backtest.engine.warm" in final and "gcc" not in final


def test_compose_checker_refuses_defects() -> None:
    checker = load(ROOT / "deploy/tools/check_compose.py", "check_compose")
    modcache = Path(subprocess.run([shutil.which("go") or "/usr/local/go/bin/go", "env", "GOMODCACHE"], capture_output=True,
                                   text=True, check=True).stdout.strip())
    spec_files = sorted(modcache.glob("github.com/compose-spec/compose-go/v2@*/"
                                      "schema/compose-spec.json"))
    if not spec_files:
        pytest.fail("expected the Compose spec schema from compose-go (run `make deploy-tools`)")
    spec = json.loads(spec_files[-1].read_text())
    compose = ROOT / "deploy/compose/compose.yaml"
    doc = yaml.safe_load(compose.read_text())
    assert checker.problems(spec, doc, compose.parent) == []
    broken = copy.deepcopy(doc)
    broken["services"]["strategy"]["restartt"] = "always"
    assert checker.problems(spec, broken, compose.parent)
    broken = copy.deepcopy(doc)
    broken["services"]["strategy"]["secrets"].append("USDCARB_NOWHERE")
    assert checker.problems(spec, broken, compose.parent)
    broken = copy.deepcopy(doc)
    broken["services"]["gateway"]["depends_on"]["replay"] = {"condition": "service_healthy"}
    assert checker.problems(spec, broken, compose.parent)

