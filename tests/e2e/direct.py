"""Reach a service of the running stack straight at its own port, bypassing Envoy."""

from __future__ import annotations

import grpc

from usdcarb.devstack.stack import StackInfo


def service_channel(stack: StackInfo, service: str) -> grpc.Channel:
    """Open a channel to ``service`` (e.g. "strategy") at its own port (close it after use):
    mutual TLS with the stack's client certificate, as a peer inside the mesh would."""
    return stack.channel(service)
