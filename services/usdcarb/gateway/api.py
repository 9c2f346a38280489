"""Read the services, methods and HTTP rules of the API from its descriptor set.

The gateway's routes and JWT rules are derived from the same ``FileDescriptorSet``
Envoy's transcoder loads, so a new RPC or HTTP rule reaches the gateway without
hand-editing. Path templates follow google/api/http.proto::

    Template = "/" Segments [ Verb ] ;   Segment = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;   Verb = ":" LITERAL ;
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

__all__ = [
    "HttpRule",
    "Method",
    "Service",
    "has_verb",
    "load_services",
    "template_regex",
]

PACKAGE = "usdcarb.v1"


@dataclass(frozen=True, slots=True)
class HttpRule:
    """One REST binding of a method: HTTP verb, path template and body selector."""

    method: str
    template: str
    body: str = ""  # "*", a field name, or "" (no body)


@dataclass(frozen=True, slots=True)
class Method:
    """One RPC with its REST bindings."""

    name: str
    server_streaming: bool
    client_streaming: bool
    http_rules: tuple[HttpRule, ...]


@dataclass(frozen=True, slots=True)
class Service:
    """One gRPC service of the package."""

    full_name: str
    methods: tuple[Method, ...]

    @property
    def name(self) -> str:
        """Return the unqualified name, e.g. ``StrategyService``."""
        return self.full_name.rsplit(".", 1)[-1]

    @property
    def short_name(self) -> str:
        """Return the backend name used for clusters and ports, e.g. ``strategy``."""
        return self.name.removesuffix("Service").lower()

    def grpc_path(self, method: Method) -> str:
        """Return the HTTP/2 path of a native gRPC call, ``/pkg.Service/Method``."""
        return f"/{self.full_name}/{method.name}"


def _rules(rule: http_pb2.HttpRule) -> list[HttpRule]:
    pattern = rule.WhichOneof("pattern")
    found: list[HttpRule] = []
    if pattern == "custom":
        found.append(HttpRule(rule.custom.kind.upper(), rule.custom.path, rule.body))
    elif pattern is not None:
        found.append(HttpRule(pattern.upper(), getattr(rule, pattern), rule.body))
    for extra in rule.additional_bindings:
        found.extend(_rules(extra))
    return found


def load_services(descriptor_path: Path, package: str = PACKAGE) -> list[Service]:
    """Return every service of ``package`` in the descriptor set, sorted by name."""
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(Path(descriptor_path).read_bytes())
    services: list[Service] = []
    for file in fds.file:
        if file.package != package:
            continue
        for svc in file.service:
            methods = []
            for m in svc.method:
                http = m.options.Extensions[annotations_pb2.http]
                methods.append(
                    Method(
                        name=m.name,
                        server_streaming=m.server_streaming,
                        client_streaming=m.client_streaming,
                        http_rules=tuple(_rules(http)),
                    )
                )
            services.append(Service(f"{package}.{svc.name}", tuple(methods)))
    if not services:
        raise ValueError(f"expected services of package {package} in {descriptor_path}, got none")
    return sorted(services, key=lambda s: s.full_name)


def _split_template(template: str) -> tuple[list[str], str | None]:
    """Split a path template into top-level segments and its verb (or None)."""
    if not template.startswith("/"):
        raise ValueError(f"expected a path template starting with '/', got {template!r}")
    segments: list[str] = []
    current = ""
    depth = 0
    verb: str | None = None
    for i, ch in enumerate(template[1:], start=1):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if depth == 0 and ch == "/":
            segments.append(current)
            current = ""
        elif depth == 0 and ch == ":":
            verb = template[i + 1 :]
            break
        else:
            current += ch
    if depth != 0:
        raise ValueError(f"expected balanced braces in path template, got {template!r}")
    segments.append(current)
    return segments, verb


def _segment_regex(segment: str) -> str:
    if segment == "*":
        return "[^/]+"
    if segment == "**":
        return ".+"
    if segment.startswith("{") and segment.endswith("}"):
        _field, sep, inner = segment[1:-1].partition("=")
        if not sep:
            return "[^/]+"
        return "/".join(_segment_regex(part) for part in inner.split("/"))
    return re.escape(segment)


def template_regex(template: str) -> str:
    """Return an anchored RE2 regex matching the request paths a path template accepts.

    ``/v1/{name=strategies/*}:cancel`` becomes ``^/v1/strategies/[^/]+:cancel$``.
    A ``*`` segment may itself contain ``:``, as in the transcoder, so routes of
    templates with a verb must come before those without (see ``has_verb``).
    """
    segments, verb = _split_template(template)
    body = "/".join(_segment_regex(s) for s in segments)
    suffix = re.escape(":" + verb) if verb else ""
    return f"^/{body}{suffix}$"


def has_verb(template: str) -> bool:
    """Tell whether a path template ends with a custom verb such as ``:cancel``."""
    return _split_template(template)[1] is not None
