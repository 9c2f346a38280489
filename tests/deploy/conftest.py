"""Rendered manifests of every overlay, built once per session with the pinned kustomize."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools" / "bin"
OVERLAYS = ("dev", "prod")


def tool(name: str) -> str:
    """Path of a pinned deployment tool; `make deploy-tools` installs them."""
    path = TOOLS / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"expected {name} in {TOOLS} (run `make deploy-tools`), got none")
    return found


def render(overlay: str) -> list[dict[str, Any]]:
    out = subprocess.run([tool("kustomize"), "build", str(ROOT / "deploy/k8s/overlays" / overlay)],
                         check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {overlay: render(overlay) for overlay in OVERLAYS}


@pytest.fixture(params=OVERLAYS, scope="session")
def docs(request: pytest.FixtureRequest,
         rendered: dict[str, list[dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
    yield rendered[request.param]


@pytest.fixture(scope="session")
def deploy_tool() -> Any:
    return tool
