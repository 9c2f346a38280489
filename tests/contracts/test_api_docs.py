"""docs/api.md: its generated tables match the protos, and the protos document every RPC."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from usdcarb.platform import authz

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gen_api_docs.py"
DOC = ROOT / "docs" / "api.md"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_api_docs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module while defined
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    return load_script()


@pytest.fixture(scope="module")
def services(gen: ModuleType) -> list[Any]:
    return gen.services(gen.build_descriptor_set())  # type: ignore[no-any-return]


def test_generated_part_of_api_doc_is_fresh() -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr


def test_handwritten_part_precedes_the_markers(gen: ModuleType) -> None:
    doc = DOC.read_text()
    assert doc.count(gen.BEGIN_MARKER) == 1 and doc.count(gen.END_MARKER) == 1
    prose = doc[: doc.index(gen.BEGIN_MARKER)]
    for section in (
        "Resource names",
        "Standard methods",
        "Errors",
        "Pagination",
        "Streaming",
        "Columnar batches",
        "Idempotency",
        "JSON mapping",
        "Authentication",
        "Versioning",
    ):
        assert f"## {section}" in prose


def test_splice_replaces_only_the_generated_part(gen: ModuleType) -> None:
    doc = f"prose\n{gen.BEGIN_MARKER}\nold table\n{gen.END_MARKER}\nafter\n"
    assert gen.splice(doc, "new table\n") == (
        f"prose\n{gen.BEGIN_MARKER}\nnew table\n{gen.END_MARKER}\nafter\n"
    )


def test_every_service_and_rpc_has_a_comment(services: list[Any]) -> None:
    # The RPC table (and the OpenAPI summaries) come from these comments.
    assert len(services) == 6
    for service in services:
        assert service.comment, f"{service.name} has no leading comment"
        for rpc in service.rpcs:
            assert rpc.summary, f"{service.name}.{rpc.name} has no leading comment"
            if f"usdcarb.v1.{service.name}/{rpc.name}" in authz.MESH_ONLY:
                # Services call it inside the mesh; no REST user needs it.
                assert not rpc.http, f"{service.name}.{rpc.name} is mesh-only but has HTTP"
                continue
            assert rpc.http, f"{service.name}.{rpc.name} has no HTTP binding"


def test_every_paged_list_states_its_page_size_limits(gen: ModuleType) -> None:
    sizes = gen.page_sizes(gen.build_descriptor_set())
    assert sizes
    for size in sizes:
        assert size.default.replace(",", "").isdigit(), size
        assert size.maximum.replace(",", "").isdigit(), size
