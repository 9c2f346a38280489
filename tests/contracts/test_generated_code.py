"""Every generated artefact loads: Python messages and stubs, the betterproto2 SDK package,
the Go SDK; and they were all generated from the same protos as the descriptor set."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

# Registered before any descriptor is parsed, so their options compare as extensions.
from google.api import annotations_pb2, field_behavior_pb2, resource_pb2  # noqa: F401
from google.protobuf import descriptor_pb2

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
GEN_PYTHON = ROOT / "gen" / "python" / "usdcarb" / "v1"
DESCRIPTOR_SET = ROOT / "gen" / "descriptor" / "usdcarb.binpb"
GO_MODULE = ROOT / "clients" / "go"
PACKAGE = "usdcarb.v1"
SDK_PACKAGE = "usdcarb_sdk._gen.usdcarb.v1"

PROTO_FILES = sorted(p.stem for p in (ROOT / "proto" / "usdcarb" / "v1").glob("*.proto"))


def own_files() -> list[descriptor_pb2.FileDescriptorProto]:
    fds = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    return [f for f in fds.file if f.package == PACKAGE]


def generated_modules() -> list[str]:
    names = sorted(p.stem for p in GEN_PYTHON.glob("*.py") if p.stem != "__init__")
    assert names, f"nothing generated in {GEN_PYTHON}: run `bash scripts/generate.sh`"
    return [f"{PACKAGE}.{n}" for n in names]


def test_every_proto_file_has_python_messages_stubs_and_type_stubs() -> None:
    for stem in PROTO_FILES:
        for suffix in ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi"):
            assert (GEN_PYTHON / f"{stem}{suffix}").is_file(), f"{stem}{suffix} not generated"


@pytest.mark.parametrize("module", generated_modules())
def test_generated_python_module_imports(module: str) -> None:
    importlib.import_module(module)


def test_descriptor_set_matches_the_generated_python() -> None:
    # The Envoy descriptor set and the _pb2 modules must come from the same protos:
    # a stale one makes the gateway and the servers disagree on the wire.
    for file in own_files():
        module = importlib.import_module(f"{PACKAGE}.{Path(file.name).stem}_pb2")
        compiled = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        # `buf build` writes an image: each file carries buf's own extension field
        # (is_import, module info) that FileDescriptorProto does not know.
        file.DiscardUnknownFields()
        assert compiled == file, f"{file.name}: descriptor set and _pb2 differ"


def _grpc_module(stem: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{stem}_pb2_grpc")


@pytest.mark.parametrize(
    ("stem", "service"),
    [(Path(f.name).stem, s.name) for f in own_files() for s in f.service],
)
def test_grpc_stubs_exist_for_every_service(stem: str, service: str) -> None:
    grpc_module = _grpc_module(stem)
    for attr in (f"{service}Stub", f"{service}Servicer", f"add_{service}Servicer_to_server"):
        assert hasattr(grpc_module, attr), f"{grpc_module.__name__} lacks {attr}"


def test_sdk_package_imports_with_its_google_dependencies() -> None:
    for module in (
        SDK_PACKAGE,
        "usdcarb_sdk._gen.google.protobuf",
        "usdcarb_sdk._gen.google.rpc",
        "usdcarb_sdk._gen.google.api",
        "usdcarb_sdk._gen.message_pool",
    ):
        importlib.import_module(module)


def _own_type_names() -> tuple[list[str], list[str]]:
    messages: list[str] = []
    enums: list[str] = []

    def walk(scope: str, message: descriptor_pb2.DescriptorProto) -> None:
        if message.options.map_entry:
            return
        full = f"{scope}.{message.name}"
        messages.append(full)
        enums.extend(f"{full}.{e.name}" for e in message.enum_type)
        for nested in message.nested_type:
            walk(full, nested)

    for file in own_files():
        enums.extend(f"{PACKAGE}.{e.name}" for e in file.enum_type)
        for message in file.message_type:
            walk(PACKAGE, message)
    return messages, enums


def test_sdk_has_a_class_for_every_message_and_enum() -> None:
    sdk = importlib.import_module(SDK_PACKAGE)
    pool = importlib.import_module("usdcarb_sdk._gen.message_pool").default_message_pool
    messages, enums = _own_type_names()
    missing = [m for m in messages if f"type.googleapis.com/{m}" not in pool.url_to_type]
    assert missing == []
    # betterproto2 flattens nested names: usdcarb.v1.Outcome.Result → OutcomeResult.
    flat = [e.removeprefix(PACKAGE + ".").replace(".", "") for e in enums]
    assert [e for e in flat if not hasattr(sdk, e)] == []


def test_sdk_has_a_sync_client_for_every_service() -> None:
    sdk = importlib.import_module(SDK_PACKAGE)
    services = [s.name for f in own_files() for s in f.service]
    assert [s for s in services if not hasattr(sdk, f"{s}Stub")] == []


def _go() -> str | None:
    found = shutil.which("go")
    if found:
        return found
    fallback = Path("/usr/local/go/bin/go")
    return str(fallback) if fallback.is_file() else None


def test_go_sdk_builds_and_vets() -> None:
    go = _go()
    if go is None:
        pytest.skip("go is not installed (see Makefile `gotools`)")
    assert (GO_MODULE / "gen" / "usdcarb" / "v1").is_dir(), "Go code not generated"
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    for args in (["build", "./..."], ["vet", "./..."]):
        run = subprocess.run(
            [go, *args], cwd=GO_MODULE, env=env, capture_output=True, text=True, timeout=240
        )
        assert run.returncode == 0, f"go {' '.join(args)} failed:\n{run.stdout}{run.stderr}"
