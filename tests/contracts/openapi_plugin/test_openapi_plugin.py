"""Contract tests for scripts/protoc-gen-usdcarb-openapi (OpenAPI from google.api.http)."""

from __future__ import annotations

import collections
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc_tools
import openapi_spec_validator
import pytest
import yaml
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
PLUGIN = ROOT / "scripts" / "protoc-gen-usdcarb-openapi"
FIXTURE_DIR = Path(__file__).parent / "fixture"
FIXTURE = "fixture/v1/things.proto"
GRPC_TOOLS_INCLUDE = Path(grpc_tools.__file__).parent / "_proto"
GOOGLEAPIS_INCLUDE = next(
    Path(p) for p in sys.path if p and (Path(p) / "google" / "api" / "http.proto").is_file()
)
OPTS = "title=Fixture API,version=9.9.9,public=fixture.v1.PingService.Ping"
REF = "#/components/schemas/"


def protoc(*args: str) -> None:
    """Run grpcio-tools' protoc with the fixture, googleapis and WKT include paths."""
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{FIXTURE_DIR}", f"-I{GOOGLEAPIS_INCLUDE}",
           f"-I{GRPC_TOOLS_INCLUDE}", *args, FIXTURE]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def generate(out: Path, opts: str = OPTS) -> bytes:
    """Run the plugin through protoc and return the bytes of openapi.yaml."""
    out.mkdir(parents=True, exist_ok=True)
    protoc(f"--plugin=protoc-gen-usdcarb-openapi={PLUGIN}", f"--usdcarb-openapi_out={out}",
           f"--usdcarb-openapi_opt={opts}")
    return (out / "openapi.yaml").read_bytes()


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return generate(tmp_path_factory.mktemp("openapi"))


@pytest.fixture(scope="module")
def spec(raw: bytes) -> dict[str, Any]:
    return yaml.safe_load(raw)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def fds(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorSet:
    out = tmp_path_factory.mktemp("fds") / "fixture.binpb"
    protoc("--include_imports", "--include_source_info", f"--descriptor_set_out={out}")
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


@pytest.fixture(scope="module")
def plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("protoc_gen_openapi",
                                                  ROOT / "scripts" / "protoc_gen_openapi.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ops(spec: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """operationId -> (path, method, operation)."""
    return {op["operationId"]: (path, verb, op)
            for path, item in spec["paths"].items() for verb, op in item.items()}


def params(op: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in op.get("parameters", []) if p["in"] == where}


def schema(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return spec["components"]["schemas"][name]  # type: ignore[no-any-return]


def test_document_is_valid_openapi(spec: dict[str, Any]) -> None:
    openapi_spec_validator.validate(spec)
    assert spec["openapi"] == "3.1.0"
    assert spec["info"] == {"title": "Fixture API", "version": "9.9.9"}
    assert spec["servers"] == [{"url": "http://127.0.0.1:8080"}]


def test_every_http_rule_appears_exactly_once(spec: dict[str, Any],
                                              fds: descriptor_pb2.FileDescriptorSet) -> None:
    expected: collections.Counter[str] = collections.Counter()
    fixture = next(f for f in fds.file if f.name == FIXTURE)
    for svc in fixture.service:
        for m in svc.method:
            if m.options.HasExtension(annotations_pb2.http):
                rule = m.options.Extensions[annotations_pb2.http]
                expected[f"/{fixture.package}.{svc.name}/{m.name}"] += 1 + len(rule.additional_bindings)
    seen = collections.Counter(op["x-grpc-method"] for _, _, op in ops(spec).values())
    assert seen == expected
    assert expected["/fixture.v1.ThingService/GetPart"] == 2
    assert "/fixture.v1.ThingService/Internal" not in seen
    assert len(ops(spec)) == sum(expected.values())  # operationIds are unique


def test_paths_expand_variables(spec: dict[str, Any]) -> None:
    routes = {oid: (path, verb) for oid, (path, verb, _) in ops(spec).items()}
    assert routes == {
        "ThingService_GetPart": ("/v1/things/{thing}/parts/{part}", "get"),
        "ThingService_GetPart_2": ("/v1/parts/{name}", "get"),
        "ThingService_ListParts": ("/v1/things/{thing}/parts", "get"),
        "ThingService_CreatePart": ("/v1/things/{thing}/parts", "post"),
        "ThingService_UpdatePart": ("/v1/things/{thing}/parts/{part}", "patch"),
        "ThingService_CancelPart": ("/v1/things/{thing}/parts/{part}:cancel", "post"),
        "ThingService_DeleteThing": ("/v1/things/{id}", "delete"),
        "ThingService_WatchThing": ("/v1/things/{id}:watch", "get"),
        "PingService_Ping": ("/v1/ping", "get"),
    }
    _, _, get = ops(spec)["ThingService_GetPart"]
    path = params(get, "path")
    assert list(path) == ["thing", "part"]
    for p in path.values():
        assert p["required"] is True
        assert "`name` = `things/{thing}/parts/{part}`" in p["description"]
    _, _, update = ops(spec)["ThingService_UpdatePart"]
    assert "`part.name` = `things/{thing}/parts/{part}`" in params(update, "path")["part"]["description"]
    _, _, multi = ops(spec)["ThingService_GetPart_2"]
    assert params(multi, "path")["name"]["x-usdcarb-multi-segment"] is True
    _, _, delete = ops(spec)["ThingService_DeleteThing"]
    assert params(delete, "path")["id"]["schema"] == {"type": "string", "format": "int64"}


def test_query_params_flatten_and_skip_path_fields(spec: dict[str, Any]) -> None:
    _, _, op = ops(spec)["ThingService_ListParts"]
    query = params(op, "query")
    assert list(query) == ["pageSize", "pageToken", "filter.colours", "filter.after",
                           "filter.min.width", "filter.min.height", "colours",
                           "includeDeleted", "minWeightUg", "readMask"]
    assert "parent" not in query and "ignoredMap" not in query  # path field, map
    assert query["colours"]["schema"] == {"type": "array",
                                          "items": {"$ref": REF + "fixture.v1.Colour"}}
    assert query["filter.after"]["schema"]["format"] == "date-time"
    assert query["minWeightUg"]["schema"] == {"type": "string", "format": "int64"}
    assert "required" not in query["includeDeleted"]
    _, _, delete = ops(spec)["ThingService_DeleteThing"]
    assert list(params(delete, "query")) == ["force"]  # `id` is bound in the path
    _, _, update = ops(spec)["ThingService_UpdatePart"]
    assert list(params(update, "query")) == ["updateMask"]  # body field is not a query param
    for oid in ("ThingService_CreatePart", "ThingService_CancelPart"):  # body "*"
        assert params(ops(spec)[oid][2], "query") == {}


def test_request_bodies(spec: dict[str, Any]) -> None:
    def body(oid: str) -> dict[str, Any]:
        return ops(spec)[oid][2]["requestBody"]["content"]["application/json"]["schema"]  # type: ignore[no-any-return]

    create = body("ThingService_CreatePart")
    assert list(create["properties"]) == ["part", "partId"]  # `parent` is in the path
    assert create["required"] == ["part"]
    cancel = body("ThingService_CancelPart")["properties"]
    assert list(cancel) == ["reason", "approval"]
    assert cancel["approval"]["writeOnly"] is True  # request-only message: never printed
    assert body("ThingService_UpdatePart")["$ref"] == REF + "fixture.v1.Part"
    assert "requestBody" not in ops(spec)["ThingService_ListParts"][2]


def test_message_schema_follows_proto3_json_mapping(spec: dict[str, Any]) -> None:
    part = schema(spec, "fixture.v1.Part")
    props = part["properties"]
    assert part["required"] == ["title"]  # field_behavior REQUIRED
    assert props["weightUg"]["type"] == "string" and props["weightUg"]["format"] == "int64"
    assert props["serial"]["format"] == "int64" and "Immutable" in props["serial"]["description"]
    assert props["blob"]["format"] == "byte"
    assert props["labels"]["additionalProperties"] == {"type": "string"}
    assert props["dims"]["additionalProperties"] == {"$ref": REF + "fixture.v1.Dimension"}
    assert "Oneof `source`" in part["description"] and "`shop`, `built`" in part["description"]
    assert "oneof `source`" in props["shop"]["description"]
    # Part is a request body too: its doubles are finite inputs...
    assert props["price"]["type"] == "number" and "finite" in props["price"]["description"]
    assert "price" not in part["required"] and "Optional" in props["price"]["description"]
    # ...except OUTPUT_ONLY ones, computed and possibly "NaN"/"Infinity"/"-Infinity".
    assert props["score"]["readOnly"] is True
    assert props["score"]["oneOf"] == [{"type": "number", "format": "double"},
                                       {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]
    assert props["createTime"] == {"type": "string", "format": "date-time", "readOnly": True,
                                   "description": props["createTime"]["description"]}
    # INPUT_ONLY: in a message that responses carry too, a scalar without presence is
    # printed empty by the gateway, so not `writeOnly` (which says absent) but marked.
    assert "writeOnly" not in props["secret"] and props["secret"]["x-usdcarb-input-only"] is True
    assert "never returned with a value" in props["secret"]["description"]
    assert props["leadTime"]["type"] == "string" and props["leadTime"]["pattern"].endswith("s$")
    assert props["extra"]["type"] == "object"
    assert props["stock"]["type"] == ["string", "null"]
    assert props["colours"]["items"] == {"$ref": REF + "fixture.v1.Colour"}
    assert props["history"]["items"] == {"$ref": REF + "fixture.v1.Dimension"}
    assert part["description"].startswith("A part of a thing.")
    assert props["title"]["description"] == "Display title."
    assert schema(spec, "fixture.v1.Colour")["enum"] == ["COLOUR_UNSPECIFIED", "COLOUR_RED",
                                                         "COLOUR_BLUE"]
    assert schema(spec, "fixture.v1.Part.Material")["type"] == "string"
    event = schema(spec, "fixture.v1.WatchThingEvent")
    assert event["properties"]["outcome"]["$ref"] == REF + "google.protobuf.Any"
    # A message only responses carry: its doubles may be non-finite.
    assert event["properties"]["rates"]["items"]["oneOf"][1]["enum"] == [
        "NaN", "Infinity", "-Infinity"]
    assert "@type" in schema(spec, "google.protobuf.Any")["properties"]


def test_responses_streaming_and_errors(spec: dict[str, Any]) -> None:
    _, _, watch = ops(spec)["ThingService_WatchThing"]
    ok = watch["responses"]["200"]
    # NDJSON (which the gateway labels application/json) and SSE on request.
    assert set(ok["content"]) == {"application/json", "text/event-stream"}
    for media in ok["content"].values():
        assert media["schema"] == {"$ref": REF + "fixture.v1.WatchThingEvent"}
    assert ok["content"]["application/json"]["x-usdcarb-framing"].startswith("ndjson")
    assert ok["content"]["text/event-stream"]["x-usdcarb-framing"].startswith("sse")
    assert "last message carries the outcome" in ok["description"]
    assert "before the first message answers with the error's HTTP status" in ok["description"]
    assert watch["x-usdcarb-streaming"] == "server"
    _, _, get = ops(spec)["ThingService_GetPart"]
    assert get["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": REF + "fixture.v1.Part"}
    assert get["summary"] == "Gets one part of a thing."
    status = schema(spec, "google.rpc.Status")["properties"]
    assert status["details"]["items"] == {"$ref": REF + "google.protobuf.Any"}


def codes(op: dict[str, Any]) -> list[str]:
    return [c for c in op["responses"] if c != "200"]


def test_each_operation_lists_its_error_statuses(spec: dict[str, Any]) -> None:
    for _, _, op in ops(spec).values():
        assert "default" not in op["responses"]
        for code in codes(op):
            assert op["responses"][code] == {"$ref": f"#/components/responses/Error{code}"}
    responses = spec["components"]["responses"]
    for name, response in responses.items():
        assert response["content"]["application/json"]["schema"] == {
            "$ref": REF + "google.rpc.Status"}, name
    by_id = {oid: codes(op) for oid, (_, _, op) in ops(spec).items()}
    # Reads of a named resource: bad input, auth, role, missing, rate limit, server.
    assert by_id["ThingService_GetPart"] == ["400", "401", "403", "404", "429", "5XX"]
    # Writes with a body can also conflict and be too large.
    assert by_id["ThingService_CreatePart"] == [
        "400", "401", "403", "404", "409", "413", "429", "5XX"]
    # A stream can fail before its first message with a precondition.
    assert "412" in by_id["ThingService_WatchThing"]
    # A public operation without input needs no token and has no rate limit.
    assert by_id["PingService_Ping"] == ["5XX"]


def test_links_chain_a_created_resource_to_the_operations_on_it(
        spec: dict[str, Any], plugin: ModuleType) -> None:
    _, _, create = ops(spec)["ThingService_CreatePart"]
    links = create["responses"]["200"]["links"]
    assert sorted(links) == ["ThingService_CancelPart", "ThingService_GetPart",
                             "ThingService_UpdatePart"]
    get = links["ThingService_GetPart"]
    assert get["operationId"] == "ThingService_GetPart"
    # The path parameters are segments of the created part's `name`.
    assert get["parameters"] == {
        "thing": "$response.body#/name#regex:^things/([^/]+)/parts/[^/]+$",
        "part": "$response.body#/name#regex:^things/[^/]+/parts/([^/]+)$"}
    # get -> update -> cancel: every operation answering with a Part links on.
    _, _, got = ops(spec)["ThingService_GetPart"]
    assert sorted(got["responses"]["200"]["links"]) == ["ThingService_CancelPart",
                                                        "ThingService_UpdatePart"]
    # `**` (GetPart_2) and plain ids cannot be cut out of a name: no link.
    assert all("GetPart_2" not in op["responses"]["200"].get("links", {})
               for _, _, op in ops(spec).values())
    _, _, watch = ops(spec)["ThingService_WatchThing"]
    assert "links" not in watch["responses"]["200"]
    # A list links from its first item.
    _, _, listed = ops(spec)["ThingService_ListParts"]
    assert listed["responses"]["200"]["links"]["ThingService_GetPart"]["parameters"]["part"] == (
        "$response.body#/parts/0/name#regex:^things/[^/]+/parts/([^/]+)$")
    assert [plugin.names_message(p, m) for p, m in (
        ("strategies/*/versions/*", "usdcarb.v1.StrategyVersion"),
        ("channels/*", "usdcarb.v1.Delivery"),
        ("backtests/*/equityCurve", "usdcarb.v1.EquityCurve"))] == [True, False, True]


def test_plugin_name_regex(plugin: ModuleType) -> None:
    import re
    segs = ["a", "*", "b", "*"]
    assert re.match(plugin.name_regex(segs, 1), "a/x/b/y").group(1) == "y"  # type: ignore[union-attr]
    assert re.match(plugin.name_regex(segs, 0), "a/x/b/y").group(1) == "x"  # type: ignore[union-attr]
    assert re.match(plugin.name_regex(segs, 0), "a/x/c/y") is None


def test_security_tags_and_public_methods(spec: dict[str, Any]) -> None:
    assert spec["security"] == [{"bearerAuth": []}]
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    for oid, (_, _, op) in ops(spec).items():
        assert ("security" in op) == (oid == "PingService_Ping")
    assert ops(spec)["PingService_Ping"][2]["security"] == []
    assert [t["name"] for t in spec["tags"]] == ["ThingService", "PingService"]
    assert spec["tags"][0]["description"].startswith("Manages things and their parts.")


def test_output_is_deterministic(raw: bytes, tmp_path: Path) -> None:
    assert generate(tmp_path / "again") == raw


def test_path_params_id_style(tmp_path: Path) -> None:
    doc = yaml.safe_load(generate(tmp_path, "path_params=id"))
    assert "/v1/things/{thingsId}/parts/{partsId}" in doc["paths"]
    openapi_spec_validator.validate(doc)


def _request(fds: descriptor_pb2.FileDescriptorSet,
             parameter: str) -> plugin_pb2.CodeGeneratorRequest:
    return plugin_pb2.CodeGeneratorRequest(file_to_generate=[FIXTURE], parameter=parameter,
                                           proto_file=list(fds.file))


@pytest.mark.parametrize(("parameter", "error"), [
    ("public=fixture.v1.PingService.Nope", "unknown methods: fixture.v1.PingService.Nope"),
    ("colour=red", "unknown plugin parameter(s): colour"),
    ("oops", "expected key=value"),
])
def test_bad_parameters_are_reported(plugin: ModuleType, fds: descriptor_pb2.FileDescriptorSet,
                                     parameter: str, error: str) -> None:
    resp = plugin.generate(_request(fds, parameter))
    assert error in resp.error and not resp.file


def test_in_process_matches_protoc_and_parameters(plugin: ModuleType, raw: bytes,
                                                  fds: descriptor_pb2.FileDescriptorSet) -> None:
    resp = plugin.generate(_request(fds, OPTS))
    assert resp.supported_features == plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    assert resp.file[0].name == "openapi.yaml" and resp.file[0].content.encode() == raw
    assert plugin.parse_parameter("title=A,public=a.B.C,d.E.F,version=2") == {
        "title": ["A"], "public": ["a.B.C", "d.E.F"], "version": ["2"]}
    assert [plugin.singular(w) for w in ("strategies", "versions", "boxes", "data")] == [
        "strategy", "version", "box", "dataId"]


def test_through_buf_generate(raw: bytes, tmp_path: Path) -> None:
    buf = shutil.which("buf", path=str(Path(sys.executable).parent)) or shutil.which("buf")
    if buf is None:
        pytest.skip("buf not installed")
    shutil.copytree(FIXTURE_DIR, tmp_path, dirs_exist_ok=True)
    (tmp_path / "google" / "api").mkdir(parents=True)
    for name in ("annotations.proto", "http.proto", "field_behavior.proto"):
        shutil.copy(GOOGLEAPIS_INCLUDE / "google" / "api" / name, tmp_path / "google" / "api")
    (tmp_path / "buf.yaml").write_text("version: v2\n")
    (tmp_path / "buf.gen.yaml").write_text(yaml.safe_dump({
        "version": "v2",
        "plugins": [{"local": [str(PLUGIN)], "out": "out", "strategy": "all",
                     "opt": OPTS.split(",")}],
    }))
    proc = subprocess.run([buf, "generate"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "openapi.yaml").read_bytes() == raw
