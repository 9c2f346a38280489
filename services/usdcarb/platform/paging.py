"""Page sizes and opaque keyset page tokens (AIP-158).

A token encodes the sort key of the last row served, so pages stay stable while rows
are added, and a token is bound to the listing it came from: one reused against other
filters is refused rather than silently giving a wrong page.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from usdcarb.platform.errors import InvalidArgument, expected


def page_size(requested: int, *, default: int = 50, maximum: int = 1000) -> int:
    """Clamp a requested page size: 0 means the default, above the maximum is capped."""
    if requested < 0:
        raise InvalidArgument.for_field("page_size", "a non-negative number", requested)
    return default if requested == 0 else min(requested, maximum)


def _binding(filters: dict[str, Any]) -> str:
    blob = json.dumps(filters, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def encode_token(last_key: list[Any], filters: dict[str, Any]) -> str:
    """Make the token for the page after the row whose sort key is ``last_key``."""
    blob = json.dumps({"k": last_key, "f": _binding(filters)}, default=str).encode()
    return base64.urlsafe_b64encode(blob).decode().rstrip("=")


def decode_token(token: str, filters: dict[str, Any]) -> list[Any] | None:
    """Return the sort key a token continues after, or None for the first page."""
    if not token:
        return None
    try:
        blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(blob)
        key, binding = data["k"], data["f"]
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument.for_field(
            "page_token", "a token from a previous response", token
        ) from None
    if binding != _binding(filters) or not isinstance(key, list):
        raise InvalidArgument.for_field(
            "page_token", "a token from a listing with the same filters", token
        )
    return key


__all__ = ["decode_token", "encode_token", "expected", "page_size"]
