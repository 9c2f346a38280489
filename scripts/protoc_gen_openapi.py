"""protoc/buf plugin: one OpenAPI 3.1 document (``openapi.yaml``) for Envoy's JSON transcoder.

Covers every RPC (and every additional binding) that carries a ``google.api.http`` option in
the files to generate. Schemas follow the proto3 JSON mapping. Parameters (comma separated):

* ``title=...``, ``version=...``: ``info`` fields.
* ``public=pkg.Service.Method,...``: operations that need no bearer token (``security: []``).
* ``path_params=singular|id``: ``{name=strategies/*}`` becomes ``{strategy}`` (default) or
  ``{strategiesId}``.
"""

from __future__ import annotations

import copy
import re
import sys
from typing import Any

import yaml
from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf import descriptor_pb2 as dpb
from google.protobuf.compiler import plugin_pb2

Schema = dict[str, Any]
Loc = tuple[str, tuple[int, ...]]  # (file name, SourceCodeInfo path)
Var = tuple[str, str, list[str]]  # (field path, pattern, path parameter names)
FD = dpb.FieldDescriptorProto
FB = field_behavior_pb2
REF = "#/components/schemas/"
_I32, _U32 = {"type": "integer", "format": "int32"}, {"type": "integer", "format": "uint32"}
SCALARS: dict[int, Schema] = {
    FD.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FD.TYPE_FLOAT: {"type": "number", "format": "float"},
    **dict.fromkeys((FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32), _I32),
    **{t: {**_U32, "minimum": 0} for t in (FD.TYPE_UINT32, FD.TYPE_FIXED32)},
    **{t: {"type": "string", "format": "int64"} for t in (
        FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64, FD.TYPE_UINT64, FD.TYPE_FIXED64)},
    FD.TYPE_BOOL: {"type": "boolean"},
    FD.TYPE_STRING: {"type": "string"},
    FD.TYPE_BYTES: {"type": "string", "format": "byte", "description": "Base64-encoded bytes."},
}
_WRAPPED = {"Double": FD.TYPE_DOUBLE, "Float": FD.TYPE_FLOAT, "Int64": FD.TYPE_INT64,
            "UInt64": FD.TYPE_UINT64, "Int32": FD.TYPE_INT32, "UInt32": FD.TYPE_UINT32,
            "Bool": FD.TYPE_BOOL, "String": FD.TYPE_STRING, "Bytes": FD.TYPE_BYTES}
PB = "google.protobuf."
WKT: dict[str, Schema] = {  # well-known types, inlined
    PB + "Timestamp": {"type": "string", "format": "date-time",
                       "description": "RFC 3339 timestamp, e.g. 2024-01-31T12:00:00Z."},
    PB + "Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
                      "description": 'Duration in seconds, e.g. "300s" or "1.5s".'},
    PB + "Struct": {"type": "object", "additionalProperties": True},
    PB + "Value": {"description": "Any JSON value."},
    PB + "ListValue": {"type": "array", "items": {}},
    PB + "FieldMask": {"type": "string",
                       "description": 'Comma-separated lowerCamel paths, e.g. "a,b.c".'},
    PB + "Empty": {"type": "object"},
    PB + "NullValue": {"type": "null"},
    **{f"{PB}{k}Value": {**SCALARS[t], "type": [SCALARS[t]["type"], "null"]}
       for k, t in _WRAPPED.items()},
}
NOT_QUERY = {PB + "Struct", PB + "Value", PB + "ListValue", PB + "Empty"}
BUILTIN: dict[str, Schema] = {  # components written by hand
    PB + "Any": {
        "type": "object", "required": ["@type"], "additionalProperties": True,
        "description": "A message of any type: `@type` names it, its JSON fields follow.",
        "properties": {"@type": {"type": "string",
                                 "example": "type.googleapis.com/google.rpc.ErrorInfo"}}},
    "google.rpc.Status": {
        "type": "object", "description": "gRPC error status (google.rpc.Status) as JSON.",
        "properties": {"code": {**_I32, "description": "google.rpc.Code value."},
                       "message": {"type": "string"},
                       "details": {"type": "array", "items": {"$ref": REF + PB + "Any"}}}},
}
NON_FINITE = ["NaN", "Infinity", "-Infinity"]
NON_FINITE_NOTE = ('Computed: may be non-finite, written as the string "NaN", "Infinity" or '
                   '"-Infinity" (proto3 JSON).')
FINITE_NOTE = "A finite JSON number."
INPUT_ONLY_NOTE = ('Input only: never returned with a value; responses show it empty ("", as '
                   "the gateway prints every scalar field).")
STREAM_NOTE = ("A server stream of `{m}` messages: one JSON object per line (NDJSON, "
               "labelled `application/json`), or, for a caller sending `Accept: "
               "text/event-stream`, one Server-Sent Event `data: {{json}}` per message. A "
               "failure before the first message answers with the error's HTTP status and a "
               "google.rpc.Status body; a failure after it ends the stream (HTTP 200 is "
               "already sent): read until the stream ends, the last message carries the outcome.")
# Error statuses (google.rpc.Status bodies) as Envoy's transcoder maps gRPC codes to HTTP.
ERRORS = {
    "400": "INVALID_ARGUMENT, FAILED_PRECONDITION or OUT_OF_RANGE: the request cannot be "
           "served as sent (malformed JSON, wrong types, unknown fields, bad values, or a "
           "resource in the wrong state).",
    "401": "UNAUTHENTICATED: no valid bearer token (or, for the token endpoints, bad "
           "credentials).",
    "403": "PERMISSION_DENIED: the caller's roles or ownership do not allow it.",
    "404": "NOT_FOUND: a resource named in the request does not exist.",
    "409": "ALREADY_EXISTS or ABORTED: the resource exists, or a concurrent change won.",
    "412": "FAILED_PRECONDITION of a server stream, before its first message.",
    "413": "The request body is larger than the gateway accepts.",
    "429": "RESOURCE_EXHAUSTED: over a rate limit (Retry-After, RetryInfo, QuotaFailure).",
    "5XX": "INTERNAL, UNIMPLEMENTED, UNAVAILABLE or DEADLINE_EXCEEDED: a server-side failure; "
           "retry UNAVAILABLE with backoff.",
}


class PluginError(Exception):
    """A problem in the input that the user must fix; reported through the response."""


def camel(name: str) -> str:
    """Return the proto3 JSON (lowerCamel) form of a snake_case or kebab-case name."""
    return re.sub(r"[_\-.]+([a-zA-Z0-9])", lambda m: m.group(1).upper(), name)


def singular(word: str) -> str:
    """Guess the singular of a collection segment, else ``<word>Id``."""
    for end, repl in (("ies", "y"), ("sses", "ss"), ("xes", "x"), ("ches", "ch"), ("shes", "sh")):
        if word.endswith(end) and len(word) > len(end):
            return camel(word[: -len(end)] + repl)
    if word.endswith("s") and not word.endswith("ss") and len(word) > 1:
        return camel(word[:-1])
    return camel(word) + "Id"


def split_top(text: str, sep: str) -> list[str]:
    """Split ``text`` on ``sep`` outside ``{...}`` variables."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "{") - (ch == "}")
        if ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [*parts, cur]


def parse_parameter(raw: str) -> dict[str, list[str]]:
    """Parse ``k=v,k2=a,b`` (tokens without ``=`` continue the previous key's list)."""
    out: dict[str, list[str]] = {}
    key = ""
    for tok in (t.strip() for t in raw.split(",")):
        k, eq, v = tok.partition("=")
        if eq:
            key = k.strip()
            out.setdefault(key, []).append(v.strip())
        elif tok and key:
            out[key].append(tok)
        elif tok:
            raise PluginError(f"bad plugin parameter {tok!r}: expected key=value")
    unknown = set(out) - {"title", "version", "public", "path_params"}
    if unknown:
        raise PluginError(f"unknown plugin parameter(s): {', '.join(sorted(unknown))}")
    return out


def describe(obj: Schema, *notes: str) -> Schema:
    """Set ``obj["description"]`` from the non-empty notes (paragraphs); return ``obj``."""
    text = "\n\n".join(n for n in notes if n)
    if text:
        obj["description"] = text
    return obj


def as_param(name: str, where: str, schema: Schema, required: bool = False) -> Schema:
    """A parameter object; the schema's description moves up to the parameter."""
    param: Schema = {"name": name, "in": where, **({"required": True} if required else {})}
    return describe(param, schema.pop("description", "")) | {"schema": schema}


def names_message(pattern: str, message: str) -> bool:
    """Whether a resource name pattern names instances of ``message`` (a full name): its
    last collection, singular (``versions`` in ``strategies/*/versions/*``), or its last
    literal segment for a singleton (``equityCurve``), is within the message's name."""
    segs = pattern.split("/")
    noun = singular(segs[-2]) if segs[-1] == "*" and len(segs) > 1 else segs[-1]
    return noun.lower() in message.rsplit(".", 1)[-1].lower()


def name_regex(segs: list[str], k: int) -> str:
    """A regex matching a resource name of pattern ``segs`` that captures its k-th ``*``."""
    out, n = [], 0
    for seg in segs:
        if seg == "*":
            out.append("([^/]+)" if n == k else "[^/]+")
            n += 1
        else:
            out.append(re.escape(seg))
    return "^" + "/".join(out) + "$"


class Generator:
    """Indexes the request's descriptors and builds the OpenAPI document."""

    def __init__(self, req: plugin_pb2.CodeGeneratorRequest) -> None:
        self.req = req
        self.params = parse_parameter(req.parameter)
        self.id_style = self.params.get("path_params", ["singular"])[0] == "id"
        self.messages: dict[str, tuple[dpb.DescriptorProto, Loc]] = {}
        self.enums: dict[str, tuple[dpb.EnumDescriptorProto, Loc]] = {}
        self.comments: dict[Loc, str] = {}
        self.schemas: dict[str, Schema] = {}
        self.variables: dict[tuple[str, str], list[Var]] = {}  # (path, verb) -> variables
        for f in req.proto_file:
            for loc in f.source_code_info.location:
                text = loc.leading_comments or loc.trailing_comments
                lines = [ln[1:] if ln.startswith(" ") else ln for ln in text.splitlines()]
                self.comments[(f.name, tuple(loc.path))] = "\n".join(lines).strip()
            prefix = f".{f.package}" if f.package else ""
            for i, m in enumerate(f.message_type):
                self._index(m, prefix, (f.name, (4, i)))
            for i, e in enumerate(f.enum_type):
                self.enums[f"{prefix}.{e.name}"] = (e, (f.name, (5, i)))
        # Messages a request can carry (their doubles are inputs: finite numbers) and
        # messages a response can carry (their input-only fields may be printed empty).
        methods = [m for f in req.proto_file for svc in f.service for m in svc.method]
        self.inputs = self.reachable([m.input_type for m in methods])
        self.outputs = self.reachable([m.output_type for m in methods])

    def reachable(self, roots: list[str]) -> set[str]:
        """Full names (with leading dot) of the messages reachable from ``roots``."""
        seen: set[str] = set()
        todo = list(roots)
        while todo:
            name = todo.pop()
            if name in seen or name not in self.messages:
                continue
            seen.add(name)
            todo += [f.type_name for f in self.messages[name][0].field
                     if f.type == FD.TYPE_MESSAGE]
        return seen

    def _index(self, m: dpb.DescriptorProto, prefix: str, loc: Loc) -> None:
        name, (file, path) = f"{prefix}.{m.name}", loc
        self.messages[name] = (m, loc)
        for i, n in enumerate(m.nested_type):
            self._index(n, name, (file, (*path, 3, i)))
        for i, e in enumerate(m.enum_type):
            self.enums[f"{name}.{e.name}"] = (e, (file, (*path, 4, i)))

    def doc(self, loc: Loc, *sub: int) -> str:
        """The comment at a descriptor location (plus sub-path), or ""."""
        return self.comments.get((loc[0], (*loc[1], *sub)), "")

    # ------------------------------------------------------------------ schemas
    def ref(self, type_name: str) -> Schema:
        """Schema of a message/enum type: inline for well-known types, else a $ref."""
        name = type_name.lstrip(".")
        if name in WKT:
            return copy.deepcopy(WKT[name])
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder: breaks recursion
            self.schemas[name] = self.build(name)
        return {"$ref": REF + name}

    def build(self, name: str) -> Schema:
        """The component schema of a message or enum (full name without leading dot)."""
        if name in BUILTIN:
            if name == "google.rpc.Status":
                self.ref(PB + "Any")
            return copy.deepcopy(BUILTIN[name])
        if f".{name}" in self.enums:
            e, loc = self.enums[f".{name}"]
            values = [f"- `{v.name}`: {self.doc(loc, 2, i)}"
                      for i, v in enumerate(e.value) if self.doc(loc, 2, i)]
            return describe({"type": "string", "enum": [v.name for v in e.value]},
                            "\n".join([self.doc(loc), *values]).strip())
        m, loc = self.messages[f".{name}"]
        props: Schema = {}
        required: list[str] = []
        output = f".{name}" not in self.inputs
        answered = f".{name}" in self.outputs
        for i, f in enumerate(m.field):
            key = f.json_name or camel(f.name)
            props[key] = self.field_schema(f, (loc[0], (*loc[1], 2, i)), self.oneof(m, f),
                                           output, answered)
            if FB.REQUIRED in f.options.Extensions[FB.field_behavior]:
                required.append(key)
        oneofs = [(o.name, [f"`{f.json_name}`" for f in m.field if self.oneof(m, f) == o.name])
                  for o in m.oneof_decl]
        out = describe({"type": "object", "properties": props}, self.doc(loc),
                       *(f"Oneof `{o}`: set at most one of {', '.join(fs)}." for o, fs in oneofs if fs))
        return out | ({"required": required} if required else {})

    def single(self, f: dpb.FieldDescriptorProto, non_finite: bool = False) -> Schema:
        """Schema of one value of a field (ignoring `repeated`); a double or float that can
        be non-finite is a number or one of the proto3 JSON strings for NaN and infinities."""
        if f.type in (FD.TYPE_MESSAGE, FD.TYPE_ENUM):
            return self.ref(f.type_name)
        if non_finite and f.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
            return {"oneOf": [copy.deepcopy(SCALARS[f.type]),
                              {"type": "string", "enum": list(NON_FINITE)}]}
        return copy.deepcopy(SCALARS[f.type])

    def map_entry(self, f: dpb.FieldDescriptorProto) -> dpb.DescriptorProto | None:
        """The map entry message if `f` is a map field."""
        entry = self.messages.get(f.type_name) if f.type == FD.TYPE_MESSAGE else None
        return entry[0] if entry and entry[0].options.map_entry else None

    @staticmethod
    def oneof(m: dpb.DescriptorProto, f: dpb.FieldDescriptorProto) -> str:
        """Name of the real (non-synthetic) oneof that `f` belongs to, or ""."""
        real = f.HasField("oneof_index") and not f.proto3_optional
        return str(m.oneof_decl[f.oneof_index].name) if real else ""

    def field_schema(self, f: dpb.FieldDescriptorProto, loc: Loc, oneof: str = "",
                     output: bool = False, answered: bool = False) -> Schema:
        """Schema of a field with its description, field behaviours and JSON-mapping notes.

        ``output``: the field's message only ever appears in responses. Its doubles, and
        OUTPUT_ONLY doubles anywhere, are computed and may be non-finite.
        ``answered``: the message also appears in responses. The gateway prints every
        scalar field without presence, so an INPUT_ONLY one of those shows there as its
        empty default: ``x-usdcarb-input-only`` instead of ``writeOnly``, which would say
        it is absent."""
        behaviors = set(f.options.Extensions[FB.field_behavior])
        entry = self.map_entry(f)
        value = entry.field[1] if entry is not None else f
        floating = value.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT)
        non_finite = floating and (output or FB.OUTPUT_ONLY in behaviors)
        if entry is not None:
            s: Schema = {"type": "object",
                         "additionalProperties": self.single(entry.field[1], non_finite)}
            if entry.field[0].type not in (FD.TYPE_STRING, FD.TYPE_BOOL):
                s["propertyNames"] = {"pattern": "^-?[0-9]+$"}
        elif f.label == FD.LABEL_REPEATED:
            s = {"type": "array", "items": self.single(f, non_finite)}
        else:
            s = self.single(f, non_finite)
        if FB.OUTPUT_ONLY in behaviors:
            s["readOnly"] = True
        printed_empty = answered and f.type not in (FD.TYPE_MESSAGE,) \
            and f.label != FD.LABEL_REPEATED and not f.HasField("oneof_index")
        if FB.INPUT_ONLY in behaviors and printed_empty:
            s["x-usdcarb-input-only"] = True
        elif FB.INPUT_ONLY in behaviors:
            s["writeOnly"] = True
        return describe(
            s, self.doc(loc), s.pop("description", ""),
            "Immutable: can only be set when the resource is created."
            if FB.IMMUTABLE in behaviors else "",
            INPUT_ONLY_NOTE if FB.INPUT_ONLY in behaviors and printed_empty else "",
            (NON_FINITE_NOTE if non_finite else FINITE_NOTE) if floating else "",
            "Optional: presence is tracked; omit the field to leave it unset."
            if f.proto3_optional else "",
            f"Member of oneof `{oneof}`: set at most one of its fields." if oneof else "")

    def resolve(self, msg: str, field_path: str) -> tuple[dpb.FieldDescriptorProto, Loc]:
        """Find the field named by a dotted proto path in a message."""
        for n, part in enumerate(field_path.split(".")):
            if msg not in self.messages:
                raise PluginError(f"{field_path!r}: {msg} is not a message")
            m, (file, path) = self.messages[msg]
            idx = next((i for i, f in enumerate(m.field) if f.name == part), None)
            if idx is None:
                raise PluginError(f"no field {field_path!r} in {msg.lstrip('.')}")
            if n == field_path.count("."):
                return m.field[idx], (file, (*path, 2, idx))
            msg = m.field[idx].type_name
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ operations
    def expand(self, template: str, req_type: str
               ) -> tuple[str, list[Schema], set[str], list[Var]]:
        """Turn an HttpRule template into an OpenAPI path, its parameters, bound fields and
        the variables: (field path, pattern, path parameter names of its wildcards)."""
        segs = split_top(template.lstrip("/"), "/")
        last = split_top(segs[-1], ":")
        segs[-1], verb = last[0], "".join(f":{v}" for v in last[1:])
        out: list[str] = []
        params: list[Schema] = []
        bound: set[str] = set()
        used: set[str] = set()
        variables: list[Var] = []

        def unique(base: str) -> str:
            name, n = base, 2
            while name in used:
                name, n = f"{base}{n}", n + 1
            used.add(name)
            return name

        for seg in segs:
            if not seg.startswith("{"):
                if seg in ("*", "**"):
                    raise PluginError(f"{template}: wildcards outside a {{variable}} unsupported")
                out.append(seg)
                continue
            fpath, _, pattern = seg[1:-1].partition("=")
            bound.add(fpath)
            f, loc = self.resolve(req_type, fpath)
            if pattern in ("", "*"):
                out.append(f"{{{unique(fpath)}}}")
                params.append(as_param(out[-1][1:-1], "path", self.field_schema(f, loc), True))
                variables.append((fpath, "*", [out[-1][1:-1]]))
                continue
            composed, names, prev = [], [], ""
            for p in pattern.split("/"):
                if p in ("*", "**"):
                    base = (f"{camel(prev)}Id" if self.id_style else singular(prev)) if prev \
                        else camel(fpath.split(".")[-1])
                    names.append((unique(base), p))
                    p = f"{{{names[-1][0]}}}"
                composed.append(p)
                prev = p
            out.extend(composed)
            variables.append((fpath, pattern, [n for n, _ in names]))
            for name, wild in names:
                desc = (f"`{name}` is a segment of the field `{fpath}` = `{'/'.join(composed)}`."
                        if len(composed) > 1 else f"The field `{fpath}`.")
                schema = {"type": "string", "description": desc}
                params.append(as_param(name, "path", schema, True))
                if wild == "**":
                    params[-1]["description"] += " Matches `**`: may span several segments (`/`)."
                    params[-1]["x-usdcarb-multi-segment"] = True
        return "/" + "/".join(out) + verb, params, bound, variables

    def query(self, msg: str, skip: set[str], prefix: str = "", jprefix: str = "",
              seen: tuple[str, ...] = ()) -> list[Schema]:
        """Query parameters (dotted lowerCamel names) for fields not in the path or body."""
        m, (file, path) = self.messages[msg]
        out: list[Schema] = []
        for i, f in enumerate(m.field):
            proto_path, json = prefix + f.name, jprefix + (f.json_name or camel(f.name))
            name = f.type_name.lstrip(".")
            if proto_path in skip or self.map_entry(f) is not None or name in NOT_QUERY:
                continue
            if f.type == FD.TYPE_MESSAGE and name not in WKT:
                if f.label != FD.LABEL_REPEATED and f.type_name not in (*seen, msg) \
                        and name not in BUILTIN:
                    out += self.query(f.type_name, skip, f"{proto_path}.", f"{json}.",
                                      (*seen, msg))
                continue
            required = not prefix and FB.REQUIRED in f.options.Extensions[FB.field_behavior]
            schema = self.field_schema(f, (file, (*path, 2, i)), self.oneof(m, f))
            out.append(as_param(json, "query", schema, required))
        return out

    def body(self, rule: http_pb2.HttpRule, req_type: str, bound: set[str]) -> Schema:
        """Request body schema: a field (``body: "field"``) or the message minus path fields."""
        if rule.body != "*":
            return self.field_schema(*self.resolve(req_type, rule.body))
        name = req_type.lstrip(".")
        tops = {self.resolve(req_type, b)[0].json_name for b in bound if "." not in b}
        if not tops:
            return self.ref(req_type)
        body = self.build(name)
        body["properties"] = {k: v for k, v in body["properties"].items() if k not in tops}
        body["required"] = [r for r in body.pop("required", []) if r not in tops]
        if not body["required"]:
            del body["required"]
        note = f"`{name}` without the fields bound in the path ({', '.join(sorted(tops))})."
        return describe(body, note)

    def responses(self, meth: dpb.MethodDescriptorProto, rule: http_pb2.HttpRule,
                  codes: list[str]) -> Schema:
        """200 (JSON, or NDJSON + SSE for server streams) and a google.rpc.Status for each
        error code in ``codes``."""
        schema = self.ref(meth.output_type)
        if rule.response_body:
            schema = self.field_schema(*self.resolve(meth.output_type, rule.response_body))
        if meth.output_type == ".google.api.HttpBody":
            ok: Schema = {"description": "Raw body.", "content": {"*/*": {"schema": {}}}}
        elif meth.server_streaming:
            # Media types as the gateway sends them; the framing says how to read each.
            ok = {"description": STREAM_NOTE.format(m=meth.output_type.lstrip(".")), "content": {
                "application/json": {"schema": schema,
                                     "x-usdcarb-framing": "ndjson: one JSON message per line"},
                "text/event-stream": {"schema": copy.deepcopy(schema),
                                      "x-usdcarb-framing": "sse: data: {json} per message"}}}
        else:
            ok = {"description": "OK", "content": {"application/json": {"schema": schema}}}
        self.ref("google.rpc.Status")
        return {"200": ok, **{code: {"$ref": f"#/components/responses/Error{code}"}
                              for code in codes}}

    @staticmethod
    def error_codes(verb: str, op: Schema, streaming: bool, public: bool,
                    credentials: bool) -> list[str]:
        """The error statuses an operation can answer with.

        ``credentials``: a public operation that checks credentials (login, token refresh,
        API-key exchange), so it can be refused (401) and is rate limited per client.
        """
        params = op.get("parameters", [])
        inputs = bool(params) or "requestBody" in op
        resource = any(p["in"] == "path" for p in params)
        codes = ["400"] if inputs or streaming else []
        if not public or credentials:
            codes.append("401")
        if not public:
            codes.append("403")
        if resource or (not public and inputs and verb != "get"):
            codes.append("404")
        if verb in ("post", "put", "patch", "delete") and not public:
            codes.append("409")
        if streaming:
            codes.append("412")
        if "requestBody" in op:
            codes.append("413")
        if not public or credentials:
            codes.append("429")
        return [*codes, "5XX"]

    def operation(self, svc: str, tag: str, meth: dpb.MethodDescriptorProto,
                  rule: http_pb2.HttpRule, doc: str, public: bool = False
                  ) -> tuple[str, str, Schema]:
        """Build one operation for one HttpRule (primary or additional binding)."""
        kind = rule.WhichOneof("pattern")
        if kind is None:
            raise PluginError(f"{svc}.{meth.name}: HttpRule without a pattern")
        template = rule.custom.path if kind == "custom" else getattr(rule, kind)
        verb = rule.custom.kind.lower() if kind == "custom" else kind
        if verb not in ("get", "put", "post", "delete", "patch", "head", "options"):
            raise PluginError(f"{svc}.{meth.name}: unsupported HTTP method {verb!r}")
        path, params, bound, variables = self.expand(template, meth.input_type)
        self.variables[(path, verb)] = variables
        op: Schema = {"operationId": f"{tag}_{meth.name}", "tags": [tag]}
        if doc:
            op["summary"], _, rest = doc.partition("\n")
            describe(op, rest.strip())
        if rule.body != "*":
            params += self.query(meth.input_type, bound | ({rule.body} if rule.body else set()))
        if params:
            op["parameters"] = params
        if rule.body:
            body = self.body(rule, meth.input_type, bound)
            op["requestBody"] = {"content": {"application/json": {"schema": body}}}
        credentials = public and meth.input_type != ".google.protobuf.Empty" and any(
            f.options.Extensions[FB.field_behavior] for f in self.messages[meth.input_type][0].field)
        op["responses"] = self.responses(meth, rule, self.error_codes(
            verb, op, meth.server_streaming, public, credentials))
        if meth.client_streaming or meth.server_streaming:
            op["x-usdcarb-streaming"] = ("bidi" if meth.server_streaming else "client") \
                if meth.client_streaming else "server"
        op["x-grpc-method"] = f"/{svc}/{meth.name}"
        return path, verb, op

    def links(self, paths: dict[str, Schema]) -> None:
        """OpenAPI links, so a stateful client can chain create -> get -> update -> delete.

        A resource message's name pattern comes from an operation that binds ``name`` to a
        pattern and answers with that message (``GetStrategy``: ``strategies/*`` ->
        ``Strategy``), when the pattern's collection names it (``TestChannel`` binds
        ``channels/*`` but answers with a ``Delivery``). Every operation answering with such a message links to every other
        operation whose path variables all lie within that pattern (the pattern itself, or
        it followed by literal segments); each path parameter is cut out of the response's
        ``name`` with a regular expression (``$response.body#/name#regex:...``, the
        extractor schemathesis reads). A list answering with a repeated field of such
        messages links the same way from its first item (``#/strategies/0/name``).
        """
        def answer(op: Schema) -> str:
            if "x-usdcarb-streaming" in op:
                return ""
            ref = op["responses"]["200"]["content"].get("application/json", {})
            return str(ref.get("schema", {}).get("$ref", "")).removeprefix(REF)

        patterns: dict[str, str] = {}
        for (path, verb), variables in self.variables.items():
            out = answer(paths[path][verb])
            props = self.schemas.get(out, {}).get("properties", {})
            for fpath, pattern, _ in variables:
                if fpath == "name" and "*" in pattern.split("/") and "name" in props \
                        and names_message(pattern, out):
                    patterns.setdefault(out, pattern)
        for (path, verb), _ in self.variables.items():
            source = paths[path][verb]
            pointer, resource = "/name", patterns.get(answer(source))
            if resource is None and answer(source):
                items = [(f.json_name, patterns[f.type_name.lstrip(".")])
                         for f in self.messages[f".{answer(source)}"][0].field
                         if f.label == FD.LABEL_REPEATED and f.type_name.lstrip(".") in patterns]
                if len(items) == 1:
                    pointer, resource = f"/{items[0][0]}/0/name", items[0][1]
            if resource is None:
                continue
            segs = resource.split("/")
            found: Schema = {}
            for (tpath, tverb), variables in self.variables.items():
                target = paths[tpath][tverb]
                params: dict[str, str] = {}
                for _, tpattern, names in variables:
                    tsegs = tpattern.split("/")
                    if tsegs[:len(segs)] != segs or "*" in tsegs[len(segs):] \
                            or "**" in tsegs[len(segs):]:
                        params = {}
                        break
                    for k, name in enumerate(names):
                        params[name] = f"$response.body#{pointer}#regex:" + name_regex(segs, k)
                if params and target is not source:
                    found[str(target["operationId"])] = {
                        "operationId": target["operationId"], "parameters": params}
            if found:
                source["responses"]["200"]["links"] = dict(sorted(found.items()))

    def document(self) -> Schema:
        """The whole OpenAPI document."""
        public = {p.lstrip("/").replace("/", ".") for p in self.params.get("public", []) if p}
        paths: dict[str, Schema] = {}
        tags: list[Schema] = []
        methods: set[str] = set()
        by_name = {f.name: f for f in self.req.proto_file}
        for f in (by_name[n] for n in self.req.file_to_generate):
            for si, svc in enumerate(f.service):
                full = f"{f.package}.{svc.name}" if f.package else svc.name
                tag = describe({"name": svc.name}, self.doc((f.name, (6, si))))
                for mi, meth in enumerate(svc.method):
                    methods.add(f"{full}.{meth.name}")
                    if not meth.options.HasExtension(annotations_pb2.http):
                        continue
                    rule = meth.options.Extensions[annotations_pb2.http]
                    for n, r in enumerate([rule, *rule.additional_bindings]):
                        is_public = f"{full}.{meth.name}" in public
                        path, verb, op = self.operation(full, svc.name, meth, r,
                                                        self.doc((f.name, (6, si, 2, mi))),
                                                        is_public)
                        op["operationId"] += f"_{n + 1}" if n else ""
                        if is_public:
                            op["security"] = []
                        if verb in paths.setdefault(path, {}):
                            raise PluginError(f"{verb.upper()} {path} is bound twice ("
                                              f"{paths[path][verb]['operationId']}, {op['operationId']})")
                        paths[path][verb] = op
                        if tag not in tags:
                            tags.append(tag)
        self.links(paths)
        if public - methods:
            raise PluginError(f"public= names unknown methods: {', '.join(sorted(public - methods))}")
        return {
            "openapi": "3.1.0",
            "info": {"title": ",".join(self.params.get("title", [])) or "API",
                     "version": ",".join(self.params.get("version", [])) or "0.1.0"},
            "servers": [{"url": "http://127.0.0.1:8080"}],
            "security": [{"bearerAuth": []}],
            "tags": tags,
            "paths": paths,
            "components": {
                "schemas": {k: self.schemas[k] for k in sorted(self.schemas)},
                "responses": {f"Error{code}": {
                    "description": text, "content": {"application/json": {
                        "schema": {"$ref": REF + "google.rpc.Status"}}}}
                    for code, text in ERRORS.items()},
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                                   "bearerFormat": "JWT"}}},
        }


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
    """SafeDumper without anchors/aliases, so shared sub-schemas are written out in full."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def generate(req: plugin_pb2.CodeGeneratorRequest) -> plugin_pb2.CodeGeneratorResponse:
    """Run the plugin on a parsed request; errors land in ``response.error``."""
    resp = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL)
    try:
        doc = Generator(req).document()
    except PluginError as exc:
        resp.error = str(exc)
        return resp
    text = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    resp.file.add(name="openapi.yaml", content=text)
    return resp


def main() -> int:
    """Read a CodeGeneratorRequest on stdin, write a CodeGeneratorResponse on stdout."""
    req = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    sys.stdout.buffer.write(generate(req).SerializeToString())
    return 0


if __name__ == "__main__":
    sys.exit(main())
