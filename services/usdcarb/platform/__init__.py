"""Shared runtime of every usdcarb service: settings, logging, errors, gRPC bootstrap.

Import the submodules directly (``from usdcarb.platform.errors import NotFound``);
this package imports nothing itself so that a pure domain module can depend on
``usdcarb.platform.errors`` without pulling in grpc, asyncpg or redis.
"""
