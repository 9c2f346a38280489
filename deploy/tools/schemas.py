"""Build kubeconform's schema directory offline, once (idempotent).

- Kubernetes kinds: the strict schemas bundled in the ``kubernetes-validate`` wheel,
  made standalone (kubeconform cannot follow their ``/api/_definitions.json`` refs and
  silently skips a schema that does not compile): each kind file gets the definitions
  it reaches under ``$defs`` and local refs.
- Custom resources (Istio, KEDA, Argo Rollouts): their CRD YAML from pinned Go modules,
  converted like kubeconform's openapi2jsonschema.py, strict (``additionalProperties:
  false`` wherever the CRD lists properties and does not preserve unknown fields).

    python deploy/tools/schemas.py OUT_DIR K8S_VERSION CRD_FILE...

Writes OUT_DIR/k8s/<kind>-<group>-<version>.json (kubeconform's KindSuffix layout) and
OUT_DIR/crds/<group>/<kind>_<version>.json.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml


def standalone(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Return ``schema`` with the definitions it reaches under ``$defs``, linked locally."""
    prefixes = ("/api/_definitions.json#/$defs/", "#/$defs/")  # kind files, definitions
    reached: dict[str, Any] = {}

    def relink(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            prefix = next((p for p in prefixes if isinstance(ref, str) and ref.startswith(p)),
                          None)
            if isinstance(ref, str) and prefix is not None:
                name = ref[len(prefix):]
                if name not in reached:
                    reached[name] = None  # mark before recursing (recursive types)
                    reached[name] = relink(copy.deepcopy(defs[name]))
                node = {**node, "$ref": f"#/$defs/{name}"}
            return {k: relink(v) if k != "$ref" else v for k, v in node.items()}
        if isinstance(node, list):
            return [relink(v) for v in node]
        return node

    out: dict[str, Any] = relink(schema)
    out.pop("$id", None)  # a relative $id would re-base the local refs
    if reached:
        out["$defs"] = reached
    return out


def k8s_schemas(out: Path, version: str) -> int:
    src = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    src = src / f"v{version}-local-strict"
    defs = json.loads((src / "_definitions.json").read_text())["$defs"]
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in sorted(src.glob("*.json")):
        if path.name.startswith("_") or path.name == "all.json":
            continue
        schema = standalone(json.loads(path.read_text()), defs)
        (out / path.name).write_text(json.dumps(schema))
        count += 1
    return count


def strict(node: Any) -> Any:
    """Forbid fields the CRD does not declare (kubeconform -strict semantics)."""
    if isinstance(node, dict):
        node = {k: strict(v) if k not in ("enum", "required", "default", "example") else v
                for k, v in node.items()}
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        if "x-kubernetes-int-or-string" in node:
            node.pop("type", None)
            node["oneOf"] = [{"type": "string"}, {"type": "integer"}]
        return node
    if isinstance(node, list):
        return [strict(v) for v in node]
    return node


def crd_schemas(out: Path, files: list[Path]) -> int:
    count = 0
    for file in files:
        for doc in yaml.safe_load_all(file.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group = doc["spec"]["group"]
            kind = doc["spec"]["names"]["kind"].lower()
            for ver in doc["spec"]["versions"]:
                schema = ver.get("schema", {}).get("openAPIV3Schema")
                if schema is None:
                    continue
                schema = strict(copy.deepcopy(schema))
                props = schema.setdefault("properties", {})
                props.setdefault("apiVersion", {"type": "string"})
                props.setdefault("kind", {"type": "string"})
                props.setdefault("metadata", {"type": "object"})
                target = out / group / f"{kind}_{ver['name']}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(schema))
                count += 1
    return count


def main(argv: list[str]) -> int:
    out, version, *crds = argv
    root = Path(out)
    kinds = k8s_schemas(root / "k8s", version)
    custom = crd_schemas(root / "crds", [Path(c) for c in crds])
    if kinds < 100 or custom < 10:
        sys.stderr.write(f"expected the full schema sets, got {kinds} kinds and {custom} CRDs\n")
        return 1
    sys.stdout.write(f"schemas: {kinds} Kubernetes kinds (v{version}), {custom} CRD versions\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
