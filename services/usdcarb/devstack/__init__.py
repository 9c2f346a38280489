"""Throwaway local servers (PostgreSQL + TimescaleDB, Redis) for tests, benchmarks and `make up`.

Each server runs as a child of the calling process on a 127.0.0.1 port of its own, keeps
everything in the data directory it is given, and only ever stops what it started.
Standard library only.
"""

from usdcarb.devstack.ports import DevstackError, free_port, scratch_dir
from usdcarb.devstack.postgres import PostgresServer
from usdcarb.devstack.redis import RedisServer

__all__ = ["DevstackError", "PostgresServer", "RedisServer", "free_port", "scratch_dir"]
