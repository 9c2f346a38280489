"""Find NUL characters in the text fields of a decoded request message.

Query and path parameters reach a service only decoded (the gateway's strict JSON check
sees the body alone), and gRPC callers send messages directly; PostgreSQL refuses NUL in
text, so a request carrying one would otherwise end INTERNAL at its first query.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

__all__ = ["NUL_TEXT", "nul_fields"]

NUL_TEXT = "expected text without NUL characters, got one"
NUL_KEY = "expected map keys without NUL characters, got one"


def nul_fields(message: Message, path: str = "") -> list[tuple[str, str]]:
    """(field, description) for every text field, at any depth, holding a NUL character.

    Fields are named by their JSON (lowerCamel) paths: ``a.b``, ``items[2].c``,
    ``labels['k']``.
    """
    found: list[tuple[str, str]] = []
    for field, value in message.ListFields():
        name = f"{path}.{field.json_name}" if path else field.json_name
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            found += _map(value, entry.fields_by_name["value"], name)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            items: Any = value if field.is_repeated else [value]
            for i, item in enumerate(items):
                found += nul_fields(item, f"{name}[{i}]" if field.is_repeated else name)
        elif field.type == FieldDescriptor.TYPE_STRING:
            items = value if field.is_repeated else [value]
            if any("\x00" in item for item in items):
                found.append((name, NUL_TEXT))
    return found


def _map(value: Any, value_field: FieldDescriptor, name: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for key, item in value.items():
        if isinstance(key, str) and "\x00" in key:
            found.append((name, NUL_KEY))
        if value_field.type == FieldDescriptor.TYPE_MESSAGE:
            found += nul_fields(item, f"{name}[{key!r}]")
        elif value_field.type == FieldDescriptor.TYPE_STRING and "\x00" in item:
            found.append((f"{name}[{key!r}]", NUL_TEXT))
    return found
