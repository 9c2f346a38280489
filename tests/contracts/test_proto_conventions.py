"""The usdcarb.v1 contracts follow the API conventions docs/api.md promises.

Everything is read from the committed descriptor set (gen/descriptor/usdcarb.binpb), the
same bytes Envoy's transcoder loads. Known gaps are `xfail(strict=True)`: they show up in
every run and the marker has to go once the proto is fixed.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.api import annotations_pb2, field_behavior_pb2, http_pb2, resource_pb2
from google.protobuf import descriptor_pb2

from usdcarb.platform import authz

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTOR_SET = ROOT / "gen" / "descriptor" / "usdcarb.binpb"
PACKAGE = "usdcarb.v1"

FDP = descriptor_pb2.FieldDescriptorProto
VERBS = ("get", "put", "post", "delete", "patch")


@dataclass(frozen=True)
class Method:
    service: str
    proto: descriptor_pb2.MethodDescriptorProto

    @property
    def name(self) -> str:
        return str(self.proto.name)

    @property
    def id(self) -> str:
        return f"{self.service}.{self.name}"

    @property
    def request(self) -> str:
        return str(self.proto.input_type).lstrip(".")

    @property
    def response(self) -> str:
        return str(self.proto.output_type).lstrip(".")


@dataclass(frozen=True)
class Binding:
    verb: str
    template: str
    body: str
    response_body: str


class Api:
    """Index of the descriptor set: messages and enums by full name, our services."""

    def __init__(self, fds: descriptor_pb2.FileDescriptorSet) -> None:
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self.methods: list[Method] = []
        self.services: dict[str, descriptor_pb2.ServiceDescriptorProto] = {}
        for file in fds.file:
            for message in file.message_type:
                self._index(file.package, message)
            for enum in file.enum_type:
                self.enums[f"{file.package}.{enum.name}"] = enum
            if file.package != PACKAGE:
                continue
            for service in file.service:
                self.services[service.name] = service
                self.methods.extend(Method(service.name, m) for m in service.method)

    def _index(self, scope: str, message: descriptor_pb2.DescriptorProto) -> None:
        full = f"{scope}.{message.name}"
        self.messages[full] = message
        for nested in message.nested_type:
            self._index(full, nested)
        for enum in message.enum_type:
            self.enums[f"{full}.{enum.name}"] = enum

    def own_messages(self) -> dict[str, descriptor_pb2.DescriptorProto]:
        return {
            k: v
            for k, v in self.messages.items()
            if k.startswith(PACKAGE + ".") and not v.options.map_entry
        }

    def field(self, message: str, name: str) -> descriptor_pb2.FieldDescriptorProto | None:
        for f in self.messages[message].field:
            if f.name == name:
                return f
        return None

    def field_path(self, message: str, path: str) -> descriptor_pb2.FieldDescriptorProto | None:
        """Resolve a dotted field path ("strategy.name") from a message."""
        current: descriptor_pb2.FieldDescriptorProto | None = None
        for part in path.split("."):
            if current is not None:
                if current.type != FDP.TYPE_MESSAGE:
                    return None
                message = current.type_name.lstrip(".")
            current = self.field(message, part)
            if current is None:
                return None
        return current


@functools.cache
def api() -> Api:
    fds = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    return Api(fds)


def http_rule(method: Method) -> http_pb2.HttpRule | None:
    options = method.proto.options
    if not options.HasExtension(annotations_pb2.http):
        return None
    return options.Extensions[annotations_pb2.http]


def bindings(method: Method) -> list[Binding]:
    rule = http_rule(method)
    if rule is None:
        return []
    out = []
    for r in [rule, *rule.additional_bindings]:
        kind = r.WhichOneof("pattern")
        assert kind in VERBS, f"{method.id}: custom HTTP verb {kind!r} is not transcoded"
        out.append(Binding(kind, getattr(r, kind), r.body, r.response_body))
    return out


VARIABLE = re.compile(r"\{([a-z_.]+)(?:=([^}]*))?\}")


def variables(template: str) -> list[tuple[str, str]]:
    """(field path, segment pattern) of every variable; `{x}` means `{x=*}`."""
    return [(m.group(1), m.group(2) or "*") for m in VARIABLE.finditer(template)]


def route_key(template: str) -> str:
    """The template with every variable expanded into its segments, wildcards as `*`."""
    return VARIABLE.sub(lambda m: m.group(2) or "*", template)


def behaviors(field: descriptor_pb2.FieldDescriptorProto) -> set[int]:
    return set(field.options.Extensions[field_behavior_pb2.field_behavior])


def resource_patterns() -> dict[str, str]:
    """Resource message full name → its pattern."""
    out = {}
    for name, message in api().own_messages().items():
        if message.options.HasExtension(resource_pb2.resource):
            [pattern] = message.options.Extensions[resource_pb2.resource].pattern
            out[name] = pattern
    return out


def pattern_glob(pattern: str) -> str:
    return re.sub(r"\{[a-z_]+\}", "*", pattern)


def methods(prefix: str = "", *, streaming: bool | None = None) -> list[Method]:
    found = [
        m
        for m in api().methods
        if m.name.startswith(prefix)
        and (streaming is None or m.proto.server_streaming == streaming)
    ]
    assert found, f"no RPC matches {prefix!r}"
    return found


def ids(items: list[Method]) -> list[str]:
    return [m.id for m in items]


def known_gap(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(reason=f"contract gap, reported: {reason}", strict=True)


def params(items: list[Method], gaps: dict[str, str]) -> list[Any]:
    """Parametrize over RPCs; the ones in `gaps` are strict xfails with the reason."""
    unknown = set(gaps) - {m.id for m in items}
    assert not unknown, f"stale known-gap entries: {unknown}"
    return [
        pytest.param(m, id=m.id, marks=[known_gap(gaps[m.id])] if m.id in gaps else [])
        for m in items
    ]


# ---------------------------------------------------------------- the API's surface


def test_descriptor_set_holds_the_six_services() -> None:
    assert set(api().services) == {
        "IngestionService",
        "ValidationService",
        "StrategyService",
        "BacktestService",
        "NotificationService",
        "IdentityService",
    }


def test_no_client_streaming_rpcs() -> None:
    # Envoy's transcoder gives REST callers unary and server streaming only.
    assert [m.id for m in api().methods if m.proto.client_streaming] == []


@pytest.mark.parametrize("method", api().methods, ids=ids(api().methods))
def test_every_rpc_has_an_http_rule(method: Method) -> None:
    if f"usdcarb.v1.{method.id.replace('.', '/')}" in authz.MESH_ONLY:
        # Mesh-only (service credentials → service tokens): no REST mapping, no route.
        assert http_rule(method) is None, f"{method.id} is mesh-only but has an HTTP rule"
        return
    assert http_rule(method) is not None, f"{method.id} has no google.api.http rule"


@pytest.mark.parametrize("method", api().methods, ids=ids(api().methods))
def test_http_rule_binds_existing_request_fields(method: Method) -> None:
    for b in bindings(method):
        assert b.template.startswith("/"), b.template
        for path, segments in variables(b.template):
            field = api().field_path(method.request, path)
            assert field is not None, f"{method.id}: {b.template} binds unknown field {path}"
            assert field.type == FDP.TYPE_STRING and field.label != FDP.LABEL_REPEATED
            assert segments and "{" not in segments
        if b.verb in ("get", "delete"):
            assert b.body == "", f"{method.id}: {b.verb.upper()} cannot carry a body"
        elif b.body not in ("", "*"):
            field = api().field(method.request, b.body)
            assert field is not None, f"{method.id}: body {b.body!r} is not a request field"
            assert field.type == FDP.TYPE_MESSAGE
        if b.response_body:
            assert api().field(method.response, b.response_body) is not None


def test_http_routes_are_unique() -> None:
    routes = Counter((b.verb, route_key(b.template)) for m in api().methods for b in bindings(m))
    assert [r for r, n in routes.items() if n > 1] == []


# ---------------------------------------------------------------- enums


def all_enums() -> list[Any]:
    return [
        pytest.param(enum, id=name)
        for name, enum in sorted(api().enums.items())
        if name.startswith(PACKAGE + ".")
    ]


@pytest.mark.parametrize("enum", all_enums())
def test_enum_zero_value_is_unspecified(enum: descriptor_pb2.EnumDescriptorProto) -> None:
    first = enum.value[0]
    assert first.number == 0
    assert first.name.endswith("_UNSPECIFIED"), first.name
    assert [v.name for v in enum.value if v.number == 0] == [first.name]


# ---------------------------------------------------------------- resources and standard methods


@pytest.mark.parametrize("resource", sorted(resource_patterns()))
def test_resource_has_identifier_name_and_pattern(resource: str) -> None:
    name = api().messages[resource].field[0]
    assert (name.name, name.number, name.type) == ("name", 1, FDP.TYPE_STRING)
    assert field_behavior_pb2.IDENTIFIER in behaviors(name)
    pattern = resource_patterns()[resource]
    segments = pattern.split("/")
    if len(segments) % 2:
        # AIP-156 singleton: a parent's pattern plus one lowerCamel segment.
        assert re.fullmatch(r"[a-z][a-zA-Z0-9]*", segments[-1]), pattern
        segments = segments[:-1]
    # AIP-122: collection ids alternate with {variables}; lowerCamel collection ids.
    assert len(segments) % 2 == 0, pattern
    for collection, variable in zip(segments[::2], segments[1::2], strict=True):
        assert re.fullmatch(r"[a-z][a-zA-Z0-9]*", collection), pattern
        assert re.fullmatch(r"\{[a-z][a-z0-9_]*\}", variable), pattern


def _resource_for(method: Method) -> str | None:
    return method.response if method.response in resource_patterns() else None


STANDARD_GET = [m for m in methods("Get") if _resource_for(m)]


@pytest.mark.parametrize("method", STANDARD_GET, ids=ids(STANDARD_GET))
def test_standard_get_binds_name_to_the_resource_pattern(method: Method) -> None:
    name = api().field(method.request, "name")
    assert name is not None and field_behavior_pb2.REQUIRED in behaviors(name)
    [b] = bindings(method)
    assert b.verb == "get"
    assert variables(b.template) == [("name", pattern_glob(resource_patterns()[method.response]))]


@pytest.mark.parametrize("method", methods("Create"), ids=ids(methods("Create")))
def test_standard_create_posts_the_resource(method: Method) -> None:
    resource = _resource_for(method)
    if method.name == "CreateApiKey":
        # Returns CreateApiKeyResponse (key + one-time secret), a documented AIP exception.
        resource = "usdcarb.v1.ApiKey"
    assert resource is not None, f"{method.id} does not return a resource"
    [b] = bindings(method)
    assert b.verb == "post"
    body = api().field(method.request, b.body)
    assert body is not None and body.type_name.lstrip(".") == resource
    assert field_behavior_pb2.REQUIRED in behaviors(body)


@pytest.mark.parametrize("method", methods("Update"), ids=ids(methods("Update")))
def test_standard_update_patches_with_a_field_mask(method: Method) -> None:
    resource = _resource_for(method)
    assert resource is not None
    [b] = bindings(method)
    assert b.verb == "patch"
    body = api().field(method.request, b.body)
    assert body is not None and body.type_name.lstrip(".") == resource
    assert variables(b.template) == [
        (f"{b.body}.name", pattern_glob(resource_patterns()[resource]))
    ]
    mask = api().field(method.request, "update_mask")
    assert mask is not None and mask.type_name == ".google.protobuf.FieldMask"


@pytest.mark.parametrize("method", methods("Delete"), ids=ids(methods("Delete")))
def test_standard_delete_uses_delete_and_returns_empty(method: Method) -> None:
    [b] = bindings(method)
    assert b.verb == "delete"
    assert method.response == "google.protobuf.Empty"
    assert [v for v, _ in variables(b.template)] == ["name"]


NAMED_BINDINGS = [
    m for m in api().methods if any(v for b in bindings(m) for v, _ in variables(b.template))
]


@pytest.mark.parametrize(
    "method",
    params(
        NAMED_BINDINGS,
        {
        },
    ),
)
def test_path_variables_match_declared_resource_patterns(method: Method) -> None:
    globs = {pattern_glob(p) for p in resource_patterns().values()}
    for b in bindings(method):
        for path, segments in variables(b.template):
            assert path.split(".")[-1] in ("name", "parent"), f"{method.id} binds {path}"
            assert segments in globs, f"{method.id}: {{{path}={segments}}} names no resource"


# ---------------------------------------------------------------- pagination

# Fixed, small catalogues: unpaged on purpose. Their requests are empty, so adding
# page_size/page_token later is an additive (non-breaking) change.
UNPAGED_CATALOGUES = {
    "IngestionService.ListExchanges",
    "StrategyService.ListStrategyKinds",
    "IdentityService.ListRoles",
}


@pytest.mark.parametrize("method", methods("List"), ids=ids(methods("List")))
def test_list_methods_paginate(method: Method) -> None:
    page_size = api().field(method.request, "page_size")
    page_token = api().field(method.request, "page_token")
    next_token = api().field(method.response, "next_page_token")
    if method.id in UNPAGED_CATALOGUES:
        assert (page_size, page_token, next_token) == (None, None, None)
        assert len(api().messages[method.request].field) == 0
        return
    assert page_size is not None, f"{method.request} has no page_size"
    assert page_token is not None, f"{method.request} has no page_token"
    assert next_token is not None, f"{method.response} has no next_page_token"
    assert page_size.type == FDP.TYPE_INT32
    assert page_token.type == next_token.type == FDP.TYPE_STRING
    # AIP-132: the page itself is one repeated message field of the response.
    items = [
        f
        for f in api().messages[method.response].field
        if f.label == FDP.LABEL_REPEATED and f.type == FDP.TYPE_MESSAGE
    ]
    assert len(items) == 1, f"{method.response} should hold exactly one repeated item field"


# ---------------------------------------------------------------- idempotency

# Create methods that are idempotent without a request_id, and why.
NATURALLY_IDEMPOTENT = {
    # The version id is the hash of its canonical parameters: a retry returns the
    # version the first call created.
    "StrategyService.CreateStrategyVersion",
    # Usernames are unique and immutable: a retry is refused with ALREADY_EXISTS and
    # creates no second user.
    "IdentityService.CreateUser",
}


@pytest.mark.parametrize(
    "method",
    params(
        [m for m in methods("Create") if m.id not in NATURALLY_IDEMPOTENT],
        {
        },
    ),
)
def test_create_requests_carry_a_request_id(method: Method) -> None:
    field = api().field(method.request, "request_id")
    assert field is not None, f"{method.request} has no request_id"
    assert field.type == FDP.TYPE_STRING and field.label != FDP.LABEL_REPEATED


def test_run_backtest_is_idempotent_too() -> None:
    field = api().field("usdcarb.v1.RunBacktestRequest", "request_id")
    assert field is not None and field.type == FDP.TYPE_STRING


# ---------------------------------------------------------------- streaming


def outcome_paths(message: str) -> list[str]:
    """Dotted paths to usdcarb.v1.Outcome fields: direct, or one message level down."""
    found = []
    for f in api().messages[message].field:
        if f.type != FDP.TYPE_MESSAGE:
            continue
        target = f.type_name.lstrip(".")
        if target == f"{PACKAGE}.Outcome":
            found.append(f.name)
            continue
        if target.startswith(PACKAGE + "."):
            found.extend(
                f"{f.name}.{g.name}"
                for g in api().messages[target].field
                if g.type_name == f".{PACKAGE}.Outcome"
            )
    return found


STREAMS = methods(streaming=True)


@pytest.mark.parametrize(
    "method",
    params(
        STREAMS,
        {
        },
    ),
)
def test_server_stream_messages_can_carry_the_outcome(method: Method) -> None:
    # The last message states how the stream ended: a REST client of a transcoded
    # stream never sees the trailing gRPC status (notes/envoy.md, trap 1).
    assert outcome_paths(method.response), f"{method.response} carries no usdcarb.v1.Outcome"


def test_outcome_locations_are_the_documented_ones() -> None:
    found = {m.id: outcome_paths(m.response) for m in STREAMS}
    assert found == {
        "BacktestService.RunBacktest": ["completed.outcome"],
        "BacktestService.WatchBacktest": ["completed.outcome"],
        "BacktestService.WatchSweep": ["outcome"],
        "BacktestService.WatchPaperRun": ["outcome"],
        "IngestionService.WatchIngestJob": ["outcome"],
        "IngestionService.StreamCandles": ["outcome"],
        "IngestionService.WatchArchiveImport": ["outcome"],
        "NotificationService.SubscribeEvents": ["outcome"],
    }


WATCHES = methods("Watch")


def test_every_watch_rpc_streams() -> None:
    assert all(m.proto.server_streaming for m in WATCHES)


@pytest.mark.parametrize(
    "method",
    params(
        WATCHES,
        {
        },
    ),
)
def test_watch_rpcs_resume_after_a_sequence(method: Method) -> None:
    sequence = api().field(method.response, "sequence")
    assert sequence is not None and sequence.type == FDP.TYPE_INT64
    after = api().field(method.request, "after_sequence")
    assert after is not None and after.type == FDP.TYPE_INT64


# ---------------------------------------------------------------- field conventions


KNOWN_TIMESTAMP_NAME_GAPS = {
}


def timestamp_fields() -> list[Any]:
    out: list[Any] = []
    for name, message in sorted(api().own_messages().items()):
        for f in message.field:
            if f.type_name == ".google.protobuf.Timestamp":
                key = f"{name}.{f.name}"
                gap = KNOWN_TIMESTAMP_NAME_GAPS.get(key)
                out.append(pytest.param(f.name, id=key, marks=[known_gap(gap)] if gap else []))
    return out


@pytest.mark.parametrize("field_name", timestamp_fields())
def test_timestamp_fields_end_in_time(field_name: str) -> None:
    # AIP-142; epoch-millisecond columns are int64 and named *_ms instead.
    assert field_name == "time" or field_name.endswith("_time")


def test_candle_layouts_carry_the_same_columns() -> None:
    batch = api().messages["usdcarb.v1.CandleBatch"]
    columns = api().messages["usdcarb.v1.CandleColumns"]
    packed = {f.name for f in batch.field if f.label == FDP.LABEL_REPEATED} - {"sources"}
    le_bytes = {f.name for f in columns.field}
    assert packed == le_bytes
    assert all(f.type == FDP.TYPE_BYTES for f in columns.field)
    assert api().field("usdcarb.v1.CandleBatch", "count") is not None


def test_equity_curve_layouts_carry_the_same_columns() -> None:
    curve = api().messages["usdcarb.v1.EquityCurve"]
    packed = {f.name for f in curve.field if f.label == FDP.LABEL_REPEATED}
    le_bytes = {f.name.removesuffix("_le") for f in curve.field if f.type == FDP.TYPE_BYTES}
    assert packed == le_bytes == {"time_ms", "equity", "drawdown", "exposure", "baseline"}


def test_columnar_requests_choose_a_layout() -> None:
    for request in ("GetCandlesRequest", "StreamCandlesRequest", "GetEquityCurveRequest"):
        layout = api().field(f"{PACKAGE}.{request}", "layout")
        assert layout is not None and layout.type_name == f".{PACKAGE}.ColumnLayout"
