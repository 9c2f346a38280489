"""Validate a Compose file against the Compose Specification's JSON schema, then check
what the schema cannot: references (depends_on, secrets, named volumes) resolve, and every
service but the one-shot ones has a health check for dependants to wait on.

    python deploy/tools/check_compose.py COMPOSE_SPEC_JSON COMPOSE_FILE
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml


def has_healthcheck(svc: dict[str, Any], base: Path) -> bool:
    """Whether the service declares a health check or its built image has one."""
    if "healthcheck" in svc:
        return not svc["healthcheck"].get("disable", False)
    build = svc.get("build")
    if not isinstance(build, dict):
        return False
    dockerfile = base / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
    return any(line.startswith("HEALTHCHECK ") for line in dockerfile.read_text().splitlines())


def problems(spec: dict[str, Any], doc: dict[str, Any], base: Path) -> list[str]:
    validator = jsonschema.Draft202012Validator(spec)
    found = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
             for e in validator.iter_errors(doc)]
    services: dict[str, Any] = doc.get("services", {})
    secrets = set(doc.get("secrets", {}))
    volumes = set(doc.get("volumes", {}))
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            if dep not in services:
                found.append(f"services/{name}/depends_on: expected a service, got {dep!r}")
            elif (cond.get("condition") == "service_healthy"
                  and not has_healthcheck(services[dep], base)):
                found.append(f"services/{name}: waits for {dep} healthy, but {dep} has no "
                             "healthcheck")
        for secret in svc.get("secrets", []):
            ref = secret if isinstance(secret, str) else secret.get("source")
            if ref not in secrets:
                found.append(f"services/{name}/secrets: expected a declared secret, got {ref!r}")
        for mount in svc.get("volumes", []):
            source = mount.split(":", 1)[0] if isinstance(mount, str) else mount.get("source")
            if source and not source.startswith((".", "/")) and source not in volumes:
                found.append(f"services/{name}/volumes: expected a named volume, got {source!r}")
    return found


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    doc = yaml.safe_load(Path(argv[1]).read_text())
    found = problems(spec, doc, Path(argv[1]).parent)
    for line in found:
        sys.stderr.write(f"{argv[1]}: {line}\n")
    if not found:
        sys.stdout.write(f"{argv[1]}: valid against the Compose Specification "
                         f"({len(doc['services'])} services)\n")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
