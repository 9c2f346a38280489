"""Check a REST request's raw JSON body strictly against the method's request message.

Envoy's grpc_json_transcoder drops JSON fields the target message does not define and
has no option to refuse them (its ``request_validation_options`` cover methods, query
parameters and binding collisions only; envoyproxy/envoy#46623). So the gateway's Lua
filter hands the raw body of a transcoded REST request to the service in the
``x-usdcarb-json-body`` header (base64), and ``violations`` walks it against the
method's request descriptor: unknown fields at any depth, wrong JSON types, integers out
of range, non-finite numbers, two members of one oneof, duplicate keys. The result only
ever refuses a request the transcoder accepted; the decoded protobuf request stays what
the handler reads, so a forged header cannot smuggle anything in.

Pure: protobuf descriptors and the standard library only.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from google.api import annotations_pb2
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from usdcarb.platform.errors import FieldViolation, expected

__all__ = ["BODY_HEADER", "MAX_VIOLATIONS", "body_target", "decode_header", "violations"]

BODY_HEADER = "x-usdcarb-json-body"
MAX_VIOLATIONS = 20

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38
_WRAPPERS = {
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String",
                 "Bytes")
}
_STRING_WKT = {"google.protobuf.Timestamp", "google.protobuf.Duration",
               "google.protobuf.FieldMask"}


class _DuplicateKey(ValueError):
    """A JSON object names one key twice (json.loads would keep the last silently)."""


class _NonFinite(ValueError):
    """A JSON number is NaN or infinite (json.loads accepts them; proto3 JSON does not)."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _no_constants(token: str) -> Any:
    raise _NonFinite(token)


def _kind(value: Any) -> str:
    """Name the JSON type of ``value`` as a caller would ("a string", "an object")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _scalar(value: Any, field: FieldDescriptor, path: str) -> Iterator[FieldViolation]:
    kind = field.type
    if kind in _INT_RANGES:
        yield from _integer(value, kind, path)
    elif kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        yield from _number(value, kind == FieldDescriptor.TYPE_FLOAT, path)
    elif kind == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            yield FieldViolation(path, f"expected a boolean, got {_kind(value)}")
    elif kind == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            yield FieldViolation(path, f"expected a string, got {_kind(value)}")
        elif "\x00" in value:
            yield FieldViolation(path, "expected a string without NUL characters, got one")
    elif kind == FieldDescriptor.TYPE_BYTES:
        yield from _bytes(value, path)
    elif kind == FieldDescriptor.TYPE_ENUM:
        yield from _enum(value, field, path)


def _integer(value: Any, kind: int, path: str) -> Iterator[FieldViolation]:
    low, high = _INT_RANGES[kind]
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value.strip(), 10)
        except ValueError:
            number = None
    if number is None:
        yield FieldViolation(path, expected("an integer", value))
    elif not low <= number <= high:
        yield FieldViolation(path, expected(f"an integer in [{low}, {high}]", value))


def _number(value: Any, single: bool, path: str) -> Iterator[FieldViolation]:
    # Proto JSON also accepts "NaN"/"Infinity" strings; no request here means them.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        yield FieldViolation(path, f"expected a number, got {_kind(value)}")
        return
    try:
        number = float(value)
    except (ValueError, OverflowError):
        yield FieldViolation(path, expected("a number", value))
        return
    if not math.isfinite(number):
        yield FieldViolation(path, expected("a finite number", value))
    elif single and abs(number) > _FLOAT32_MAX:
        yield FieldViolation(path, expected("a number within float32 range", value))


def _bytes(value: Any, path: str) -> Iterator[FieldViolation]:
    if not isinstance(value, str):
        yield FieldViolation(path, f"expected a base64 string, got {_kind(value)}")
        return
    text = value.replace("-", "+").replace("_", "/")
    try:
        base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        yield FieldViolation(path, expected("a base64 string", value))


def _enum(value: Any, field: FieldDescriptor, path: str) -> Iterator[FieldViolation]:
    enum = field.enum_type
    if isinstance(value, str) and value in enum.values_by_name:
        return
    if isinstance(value, int) and not isinstance(value, bool) and value in enum.values_by_number:
        return
    names = [v.name for v in enum.values]
    yield FieldViolation(path, expected(f"one of {names}", value))


def _value(value: Any, field: FieldDescriptor, path: str) -> Iterator[FieldViolation]:
    """Check one (non-repeated) value of ``field``."""
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        yield from _message(value, field.message_type, path)
    elif value is None:
        yield FieldViolation(path, f"expected {_scalar_name(field)}, got null")
    else:
        yield from _scalar(value, field, path)


def _scalar_name(field: FieldDescriptor) -> str:
    if field.type == FieldDescriptor.TYPE_STRING:
        return "a string"
    if field.type == FieldDescriptor.TYPE_BOOL:
        return "a boolean"
    if field.type == FieldDescriptor.TYPE_ENUM:
        return "an enum name"
    return "a number"


def _well_known(value: Any, message: Descriptor, path: str) -> Iterator[FieldViolation] | None:
    name = message.full_name
    if name == "google.protobuf.Value":
        return iter(())
    if name == "google.protobuf.Struct":
        ok = isinstance(value, dict) or value is None
        return iter(() if ok else [FieldViolation(path, f"expected an object, got {_kind(value)}")])
    if name == "google.protobuf.ListValue":
        ok = isinstance(value, list) or value is None
        return iter(() if ok else [FieldViolation(path, f"expected an array, got {_kind(value)}")])
    if name in _STRING_WKT:
        ok = isinstance(value, str) or value is None
        return iter(() if ok else [FieldViolation(path, f"expected a string, got {_kind(value)}")])
    if name in _WRAPPERS:
        return iter(()) if value is None else _scalar(value, message.fields_by_name["value"], path)
    if name == "google.protobuf.Any":
        ok = value is None or (isinstance(value, dict) and "@type" in value)
        return iter(() if ok else [FieldViolation(path, expected("an object with @type", value))])
    return None


def _message(value: Any, message: Descriptor, path: str) -> Iterator[FieldViolation]:
    special = _well_known(value, message, path)
    if special is not None:
        yield from special
        return
    if value is None:
        return
    if not isinstance(value, dict):
        yield FieldViolation(path, f"expected an object, got {_kind(value)}")
        return
    fields = _fields(message)
    oneofs: dict[str, str] = {}
    for key, item in value.items():
        field = fields.get(key)
        where = _join(path, key)
        if field is None:
            yield FieldViolation(where, f"expected a field of {message.name}, got an unknown field")
            continue
        if field.containing_oneof is not None and item is not None:
            other = oneofs.setdefault(field.containing_oneof.name, key)
            if other != key:
                yield FieldViolation(
                    where, f"expected one field of oneof {field.containing_oneof.name}, "
                    f"got {other!r} and {key!r}")
        yield from _field(item, field, where)


def _field(value: Any, field: FieldDescriptor, path: str) -> Iterator[FieldViolation]:
    if value is None:
        return  # proto3 JSON: null means "not set"
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        if not isinstance(value, dict):
            yield FieldViolation(path, f"expected an object, got {_kind(value)}")
            return
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        for key, item in value.items():
            where = f"{path}.{key}"
            if key_field.type != FieldDescriptor.TYPE_STRING:
                yield from _scalar(key, key_field, where)
            yield from _value(item, value_field, where)
        return
    if field.is_repeated:
        if not isinstance(value, list):
            yield FieldViolation(path, f"expected an array, got {_kind(value)}")
            return
        for i, item in enumerate(value):
            yield from _value(item, field, f"{path}[{i}]")
        return
    yield from _value(value, field, path)


@lru_cache(maxsize=512)
def _fields(message: Descriptor) -> dict[str, FieldDescriptor]:
    """Both spellings proto JSON accepts: ``jsonName`` and ``proto_name``."""
    fields: dict[str, FieldDescriptor] = {}
    for field in message.fields:
        fields[field.name] = field
        fields[field.json_name] = field
    return fields


@lru_cache(maxsize=512)
def body_target(method: str) -> tuple[Descriptor, str] | None:
    """Return what a REST body of ``method`` ("pkg.Service/Method") is parsed into.

    That is the request message and the JSON path prefix of its body ("" for
    ``body: "*"``, the field's JSON name otherwise), or None when the method has no
    HTTP rule with a body (or is unknown).
    """
    service_name, _, method_name = method.lstrip("/").rpartition("/")
    try:
        service = descriptor_pool.Default().FindServiceByName(service_name)
    except KeyError:
        return None
    rpc = service.methods_by_name.get(method_name)
    if rpc is None:
        return None
    rule = rpc.GetOptions().Extensions[annotations_pb2.http]
    # Every binding of one of our methods shares its body selector (no
    # additional_bindings with another body); take the primary rule's.
    if not rule.body:
        return None
    request = rpc.input_type
    if rule.body == "*":
        return request, ""
    field = request.fields_by_name.get(rule.body)
    if field is None or field.message_type is None:
        return None
    return field.message_type, field.json_name


def decode_header(value: str | bytes) -> bytes | None:
    """Return the raw body the gateway put in BODY_HEADER, or None if it is not base64."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def violations(body: bytes, message: Descriptor, prefix: str = "") -> list[FieldViolation]:
    """Return what is wrong with the JSON ``body`` for ``message`` (empty when nothing).

    Paths are the JSON paths of the request (``strategy.labels.a``, ``symbols[2]``),
    under ``prefix`` when the body is one field of the request.
    """
    if not body.strip():
        return []
    try:
        value = json.loads(body, object_pairs_hook=_pairs, parse_constant=_no_constants)
    except _DuplicateKey as exc:
        return [FieldViolation(prefix, f"expected each key once, got {str(exc)!r} twice")]
    except _NonFinite as exc:
        return [FieldViolation(prefix, f"expected JSON numbers, got {exc}")]
    except (ValueError, RecursionError) as exc:
        return [FieldViolation(prefix, f"expected a JSON document, got invalid JSON ({exc})")]
    found: list[FieldViolation] = []
    for violation in _message(value, message, prefix):
        found.append(violation)
        if len(found) >= MAX_VIOLATIONS:
            break
    return found
