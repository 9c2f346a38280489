"""gen/openapi/openapi.yaml lists every google.api.http binding and is valid OpenAPI.

Expected bindings come from the committed descriptor set; the document comes from the
project's OpenAPI plugin (scripts/protoc-gen-usdcarb-openapi) via scripts/generate.sh.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from pathlib import Path
from typing import Any

import openapi_spec_validator
import pytest
import yaml
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTOR_SET = ROOT / "gen" / "descriptor" / "usdcarb.binpb"
OPENAPI = ROOT / "gen" / "openapi" / "openapi.yaml"
PACKAGE = "usdcarb.v1"
VERBS = ("get", "put", "post", "delete", "patch")
# Callable without a token (docs/api.md, Authentication).
PUBLIC = {
    "IdentityService.Login",
    "IdentityService.RefreshToken",
    "IdentityService.ExchangeApiKey",
    "IdentityService.GetJwks",
}
VARIABLE = re.compile(r"\{([a-z_.]+)(?:=([^}]*))?\}")


@functools.cache
def expected_bindings() -> list[tuple[str, str, str, str, bool]]:
    """(Service.Method, verb, template, body, server_streaming) for every binding."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    out = []
    for file in fds.file:
        if file.package != PACKAGE:
            continue
        for service in file.service:
            for method in service.method:
                rule = method.options.Extensions[annotations_pb2.http]
                for r in [rule, *rule.additional_bindings]:
                    verb = r.WhichOneof("pattern")
                    if verb is None:
                        continue
                    out.append(
                        (
                            f"{service.name}.{method.name}",
                            verb,
                            getattr(r, verb),
                            r.body,
                            method.server_streaming,
                        )
                    )
    assert out, "no HTTP bindings in the descriptor set"
    return out


def expand(template: str) -> str:
    """`/v1/{name=strategies/*/versions/*}:diff` → `/v1/strategies/{}/versions/{}:diff`."""
    return VARIABLE.sub(lambda m: (m.group(2) or "*").replace("*", "{}"), template)


def normalize(path: str) -> str:
    """An OpenAPI path with its parameter names erased: `/v1/users/{user}` → `/v1/users/{}`."""
    return re.sub(r"\{[^}/]+\}", "{}", path)


@functools.cache
def spec() -> dict[str, Any]:
    assert OPENAPI.is_file(), f"{OPENAPI} is missing: run `bash scripts/generate.sh`"
    return yaml.safe_load(OPENAPI.read_text())  # type: ignore[no-any-return]


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    """(verb, path, operation) of every operation in the document."""
    return [
        (verb, path, op)
        for path, item in spec()["paths"].items()
        for verb, op in item.items()
        if verb in VERBS
    ]


def grpc_method(op: dict[str, Any]) -> str:
    """Service.Method of an operation, from x-grpc-method or else the operationId."""
    if "x-grpc-method" in op:
        return str(op["x-grpc-method"]).split(f"/{PACKAGE}.", 1)[1].replace("/", ".")
    return str(op["operationId"]).replace("_", ".", 1)


def test_openapi_document_is_valid() -> None:
    openapi_spec_validator.validate(spec())


def test_operation_ids_are_unique() -> None:
    counts = Counter(op["operationId"] for _, _, op in operations())
    assert [o for o, n in counts.items() if n > 1] == []


def test_every_http_binding_is_one_operation() -> None:
    expected = Counter((m, verb, expand(t)) for m, verb, t, _, _ in expected_bindings())
    found = Counter((grpc_method(op), verb, normalize(path)) for verb, path, op in operations())
    assert found - expected == Counter(), "operations without an HTTP rule"
    assert expected - found == Counter(), "HTTP rules missing from the document"


@pytest.mark.parametrize(
    "binding",
    expected_bindings(),
    ids=lambda b: f"{b[0]}:{b[1].upper()}",
)
def test_binding_operation_matches_its_rule(
    binding: tuple[str, str, str, str, bool],
) -> None:
    method, verb, template, body, streaming = binding
    matches = [
        (v, p, op) for v, p, op in operations() if v == verb and normalize(p) == expand(template)
    ]
    assert len(matches) == 1, f"{method}: {verb.upper()} {expand(template)} not listed once"
    _, path, op = matches[0]
    service, name = method.split(".")
    primary = (verb, template) == next(
        (v, t) for m, v, t, _, _ in expected_bindings() if m == method
    )
    if primary:
        assert op["operationId"] == f"{service}_{name}"

    # Every {param} of the path is a required path parameter, and each name once.
    names = re.findall(r"\{([^}/]+)\}", path)
    assert len(names) == len(set(names)), path
    declared = {p["name"]: p for p in op.get("parameters", []) if p.get("in") == "path"}
    assert set(declared) == set(names), f"{path}: path parameters {sorted(declared)}"
    assert all(p.get("required") is True for p in declared.values())

    assert ("requestBody" in op) == (body != ""), f"{method}: body {body!r}"

    ok = op["responses"]["200"]
    if streaming:
        # REST callers read a server stream as NDJSON, one message per line, labelled
        # application/json as the gateway sends it, or as SSE when they ask for it.
        content = ok.get("content", {})
        ndjson = content.get("application/json", {}).get("x-usdcarb-framing", "")
        sse = content.get("text/event-stream", {}).get("x-usdcarb-framing", "")
        assert ndjson.startswith("ndjson") and sse.startswith("sse"), f"{method} stream format"

    if method in PUBLIC:
        assert op.get("security") == [], f"{method} must be callable without a token"
    else:
        assert op.get("security", spec().get("security")) == [{"bearerAuth": []}], method


def test_errors_are_google_rpc_status() -> None:
    responses = spec()["components"]["responses"]
    for verb, path, op in operations():
        errors = [code for code in op["responses"] if code != "200"]
        assert errors, f"{verb.upper()} {path} documents no error response"
        assert "default" not in op["responses"], f"{path}: list the statuses, not a default"
        for code in errors:
            ref = op["responses"][code]["$ref"].rsplit("/", 1)[1]
            schema = responses[ref]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/google.rpc.Status"}, (path, code)


def test_authenticated_operations_list_auth_role_and_rate_limit_errors() -> None:
    for verb, path, op in operations():
        if op.get("security") == []:
            continue
        assert {"401", "403", "429", "5XX"} <= set(op["responses"]), f"{verb} {path}"


def test_streams_and_write_only_fields() -> None:
    schemas = spec()["components"]["schemas"]
    user = schemas["usdcarb.v1.User"]["properties"]["password"]
    # The gateway prints every scalar: a User response shows `password` empty.
    assert user.get("x-usdcarb-input-only") is True and "writeOnly" not in user
    login = next(op for _, p, op in operations() if p == "/v1/auth:login")
    body = login["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("usdcarb.v1.LoginRequest")
    assert schemas["usdcarb.v1.LoginRequest"]["properties"]["password"]["writeOnly"] is True


def test_create_get_update_delete_are_linked() -> None:
    ops = {op["operationId"]: op for _, _, op in operations()}
    create = ops["StrategyService_CreateStrategy"]["responses"]["200"]["links"]
    assert {"StrategyService_GetStrategy", "StrategyService_UpdateStrategy",
            "StrategyService_DeleteStrategy"} <= set(create)
    assert create["StrategyService_GetStrategy"]["parameters"] == {
        "strategy": "$response.body#/name#regex:^strategies/([^/]+)$"}
    get = ops["StrategyService_GetStrategy"]["responses"]["200"]["links"]
    assert {"StrategyService_UpdateStrategy", "StrategyService_DeleteStrategy"} <= set(get)
    # A list links from its first item; an operation naming another resource does not.
    listed = ops["StrategyService_ListStrategies"]["responses"]["200"]["links"]
    assert listed["StrategyService_GetStrategy"]["parameters"] == {
        "strategy": "$response.body#/strategies/0/name#regex:^strategies/([^/]+)$"}
    assert "links" not in ops["NotificationService_TestChannel"]["responses"]["200"]
    for oid, op in ops.items():
        for link in op["responses"]["200"].get("links", {}).values():
            assert link["operationId"] in ops, (oid, link)
