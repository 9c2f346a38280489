"""Pieces both clients share: targets, requests from keywords, paging, metadata."""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping, Sequence
from typing import Any, cast
from urllib.parse import urlsplit

import betterproto2
import grpc

from usdcarb_sdk._methods import MethodSpec

__all__ = [
    "CA_FILE_ENV",
    "DEFAULT",
    "Metadata",
    "Target",
    "build_request",
    "call_metadata",
    "items_field",
    "parse_target",
]

Metadata = Sequence[tuple[str, str]]
CaFile = str | os.PathLike[str]
# The CA to trust for https targets when no ca_file is given (the local stack's dev CA:
# .run/stack/tls/ca.pem); unset, the system's roots.
CA_FILE_ENV = "USDCARB_CA_FILE"
DEFAULT_TIMEOUT_S = 30.0


class _Default(enum.Enum):
    """Mark a keyword left out, so the client's default applies (None means no deadline)."""

    DEFAULT = enum.auto()


DEFAULT = _Default.DEFAULT


class Target:
    """Where to connect and whether over TLS."""

    def __init__(self, address: str, credentials: grpc.ChannelCredentials | None) -> None:
        self.address = address
        self.credentials = credentials

    def __repr__(self) -> str:
        return f"Target({self.address!r}, tls={self.credentials is not None})"


def tls_credentials(ca_file: CaFile | None) -> grpc.ChannelCredentials:
    """Return TLS channel credentials trusting ``ca_file`` (PEM), or the system's roots."""
    if ca_file is None:
        return grpc.ssl_channel_credentials()
    with open(ca_file, "rb") as f:
        return grpc.ssl_channel_credentials(root_certificates=f.read())


def parse_target(target: str, credentials: grpc.ChannelCredentials | None,
                 ca_file: CaFile | None = None) -> Target:
    """Return the channel target for "host:port", "http://host:port" or "https://host[:port]".

    ``https``, explicit ``credentials`` or a ``ca_file`` mean TLS; the gateway's REST URL
    works as is. An https target trusts ``ca_file``, else ``$USDCARB_CA_FILE``, else the
    system's roots.
    """
    if credentials is None and ca_file is not None:
        credentials = tls_credentials(ca_file)
    if "://" not in target:
        return Target(target, credentials)
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected host:port or an http(s) URL, got {target!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    if tls and credentials is None:
        credentials = tls_credentials(os.environ.get(CA_FILE_ENV) or None)
    return Target(f"{parts.hostname}:{port}", credentials)


def build_request(spec: MethodSpec, request: betterproto2.Message | None,
                  fields: Mapping[str, Any]) -> betterproto2.Message:
    """Return ``request``, or a request of the method's type built from keyword ``fields``."""
    if request is not None:
        if fields:
            raise TypeError(f"expected a request or keyword fields for {spec.attribute}, got both")
        if not isinstance(request, spec.request_type):
            raise TypeError(f"expected {spec.request_type.__name__} for {spec.attribute}, "
                            f"got {type(request).__name__}")
        return request
    return spec.request_type(**fields)


def call_metadata(token: str | None, extra: Metadata) -> tuple[tuple[str, str], ...]:
    """Return the metadata of one attempt: the bearer token, then the caller's pairs."""
    auth = (("authorization", f"Bearer {token}"),) if token else ()
    return (*auth, *extra)


def items_field(response_type: type[betterproto2.Message]) -> str:
    """Return the repeated field holding a List response's items (e.g. "strategies")."""
    meta = cast(Any, response_type)._betterproto.meta_by_field_name
    repeated: list[str] = [name for name, field in meta.items() if field.repeated]
    if "next_page_token" not in meta or not repeated:
        raise TypeError(f"expected a paged List response, got {response_type.__name__}")
    return repeated[0]


def method_doc(spec: MethodSpec) -> str:
    """Return the docstring of a generated client method."""
    kind = "Stream" if spec.server_streaming else "Return"
    return (f"{spec.doc}\n\nCall {spec.path}: take a {spec.request_type.__name__} (or its "
            f"fields as keywords); {kind.lower()} {spec.response_type.__name__}"
            f"{' messages' if spec.server_streaming else ''}.")
