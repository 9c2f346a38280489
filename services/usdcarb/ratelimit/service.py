"""Envoy's reference rate limit service (``github.com/envoyproxy/ratelimit``, Go) for the
shared budgets: where its binary is, its config from the limits file, its environment.

``make setup`` builds the binary into ``.tools/bin/ratelimit`` at the pinned
pseudo-version below. It counts fixed windows in Redis (pipelined INCRBY + EXPIRE),
answers over-limit keys from a local cache without Redis, serves gRPC health (service
``ratelimit``, NOT_SERVING while Redis is unreachable), Prometheus metrics, and reloads
its config when a file in its runtime directory changes: ``write_config`` replaces the
file atomically, so a changed limits file applies without a restart.

``write_config`` also writes the gateway's per-caller limits (``api``) beside it, under
``<root>/envoy``: one ECDS file per tier holding that tier's local_ratelimit filter
config, each renamed into place, which Envoy (``GatewayConfig.local_limits_dir``) watches
and applies without a restart either.

When Redis is down it answers errors, and Envoy's ``failure_mode_deny`` decides (open by
default: requests pass and ``ratelimit.failure_mode_allowed`` counts them).

    python -m usdcarb.ratelimit.service --limits limits.yaml --out DIR
        # DIR/ratelimit/config/usdcarb.yaml and DIR/envoy/<tier>.yaml
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from usdcarb.ratelimit.limits import DEFAULT_LIMITS_FILE, Limits, load_limits, service_config

__all__ = [
    "CONFIG_FILE",
    "HEALTH_SERVICE",
    "MODULE",
    "VERSION",
    "RlsTls",
    "binary",
    "environment",
    "envoy_dir",
    "render_envoy_limits",
    "write_config",
    "write_envoy_limits",
]

MODULE = "github.com/envoyproxy/ratelimit/src/service_cmd"
# No tag after v1.4.0: the main branch's pseudo-version (keep in sync with the Makefile).
VERSION = "v1.4.1-0.20260122083618-3fb702589d36"
REPO = Path(__file__).resolve().parents[3]
BINARY_NAME = "ratelimit"
HEALTH_SERVICE = "ratelimit"  # gRPC health: follows Redis (the "" service is always SERVING)
SUBDIRECTORY = "ratelimit"
APP_DIRECTORY = "config"
CONFIG_FILE = "usdcarb.yaml"
ENVOY_SUBDIRECTORY = "envoy"
# Per-caller buckets each gateway keeps (the LRU bound; GatewayConfig's default).
MAX_DYNAMIC_DESCRIPTORS = 20_000


def binary() -> Path:
    """Return the built service (``.tools/bin/ratelimit``, else one on PATH)."""
    built = REPO / ".tools" / "bin" / BINARY_NAME
    if built.exists():
        return built
    found = shutil.which(BINARY_NAME)
    if found is None:
        raise FileNotFoundError(f"expected {built} (make setup builds it), got none")
    return Path(found)


def config_dir(runtime_root: Path) -> Path:
    """Return the folder the service loads ``*.yaml`` from under ``runtime_root``."""
    return runtime_root / SUBDIRECTORY / APP_DIRECTORY


def render_config(limits: Limits) -> str:
    """Return the service's YAML for ``limits``."""
    header = "# Generated from the usdcarb limits file (usdcarb.ratelimit.limits); do not edit.\n"
    return header + str(yaml.safe_dump(service_config(limits), sort_keys=False))


def envoy_dir(runtime_root: Path) -> Path:
    """Return the folder of the gateway's per-caller limit files under ``runtime_root``."""
    return runtime_root / ENVOY_SUBDIRECTORY


def render_envoy_limits(limits: Limits, *, max_dynamic_descriptors: int = MAX_DYNAMIC_DESCRIPTORS,
                        divided: bool = False) -> dict[str, str]:
    """Return the gateway's ECDS files for ``limits`` (``api``), by file name: one per tier.
    ``divided``: the gateway runs with a local cluster (each replica enforces its share)."""
    from usdcarb.gateway.config import _PlainDumper
    from usdcarb.gateway.envoy import local_limit_resources

    header = "# Generated from the usdcarb limits file (usdcarb.ratelimit.service); do not edit.\n"
    return {name: header + str(yaml.dump(document, Dumper=_PlainDumper, sort_keys=False))
            for name, document in local_limit_resources(
                limits, max_dynamic_descriptors=max_dynamic_descriptors,
                divided=divided).items()}


def _replace(folder: Path, name: str, text: str) -> Path:
    # A dot file renamed over the old one: readers never see half a file, and the rename
    # is the change both watchers react to (Envoy's watched_directory: a move into it).
    target = folder / name
    tmp = folder / f".{name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, target)
    return target


def write_envoy_limits(limits: Limits, folder: Path, *,
                       max_dynamic_descriptors: int = MAX_DYNAMIC_DESCRIPTORS,
                       divided: bool = False) -> list[Path]:
    """Write the gateway's per-caller limit files into ``folder``, each atomically; return
    their paths. A file whose content is unchanged is left alone (its buckets keep their
    tokens: Envoy makes new buckets when a tier's config changes)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_envoy_limits(limits, max_dynamic_descriptors=max_dynamic_descriptors,
                                          divided=divided).items():
        target = folder / name
        if target.exists() and target.read_text() == text:
            written.append(target)
            continue
        written.append(_replace(folder, name, text))
    return written


def write_config(limits: Limits, runtime_root: Path, *,
                 max_dynamic_descriptors: int = MAX_DYNAMIC_DESCRIPTORS,
                 divided: bool = False) -> Path:
    """Write the config for ``limits`` under ``runtime_root`` atomically; return its path.

    The temporary file is a dot file (ignored: RUNTIME_IGNOREDOTFILES) renamed over the
    old one, so the service never reads half a file and reloads on the rename. The
    gateway's per-caller limits go to ``envoy_dir(runtime_root)`` the same way, first:
    by the time the shared budgets change, the per-caller ones have.
    """
    write_envoy_limits(limits, envoy_dir(runtime_root),
                       max_dynamic_descriptors=max_dynamic_descriptors, divided=divided)
    folder = config_dir(runtime_root)
    folder.mkdir(parents=True, exist_ok=True)
    return _replace(folder, CONFIG_FILE, render_config(limits))


@dataclass(frozen=True, kw_only=True)
class RlsTls:
    """Mutual TLS of the gRPC port: the service's certificate, and the CA and name
    (SAN) a client certificate must have (Envoy's)."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path
    client_san: str = "envoy"


def redis_address(url: str) -> str:
    """Return host:port of a ``redis://host:port[/db]`` URL (the service's REDIS_URL)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "tcp", "") or not parts.hostname:
        raise ValueError(f"expected redis://host:port, got {url!r}")
    return f"{parts.hostname}:{parts.port or 6379}"


def environment(*, runtime_root: Path, redis_url: str, grpc_port: int, http_port: int,
                debug_port: int, metrics_port: int, host: str = "127.0.0.1",
                tls: RlsTls | None = None, redis_timeout_ms: int = 100,
                gomaxprocs: int = 1) -> dict[str, str]:
    """Return the service's settings (environment variables) for one process."""
    env = {
        "GRPC_HOST": host, "GRPC_PORT": str(grpc_port),
        "HOST": host, "PORT": str(http_port),  # HTTP: /healthcheck, /json
        "DEBUG_HOST": "127.0.0.1", "DEBUG_PORT": str(debug_port),
        "USE_STATSD": "false", "USE_PROMETHEUS": "true",
        "PROMETHEUS_ADDR": f"{host}:{metrics_port}",
        "LOG_LEVEL": "warn", "LOG_FORMAT": "json",
        "RUNTIME_ROOT": str(runtime_root), "RUNTIME_SUBDIRECTORY": SUBDIRECTORY,
        "RUNTIME_APPDIRECTORY": APP_DIRECTORY,
        # Watch the config folder itself (write_config renames into it), skip dot files.
        "RUNTIME_WATCH_ROOT": "false", "RUNTIME_IGNOREDOTFILES": "true",
        "BACKEND_TYPE": "redis", "REDIS_SOCKET_TYPE": "tcp",
        "REDIS_URL": redis_address(redis_url),
        # Checks batched into one Redis round trip per 150 µs; over-limit keys answered
        # from a 1 MiB local cache without Redis.
        "REDIS_PIPELINE_WINDOW": "150us", "REDIS_PIPELINE_LIMIT": "0",
        "LOCAL_CACHE_SIZE_IN_BYTES": str(1 << 20),
        # Fail fast while Redis is away (Envoy's timeout is 100 ms; its failure mode
        # decides), and keep reconnecting in the background.
        "REDIS_TIMEOUT": f"{redis_timeout_ms}ms",
        "REDIS_HEALTH_CHECK_ACTIVE_CONNECTION": "true",
        # One thread runs Go code: a check is a chain of goroutine hand-offs (gRPC reader,
        # handler, Redis writer and reader, gRPC writer) that then stay on one thread
        # instead of waking a second one each time, and no idle thread spins looking for
        # work. Measured on the 2-core dev machine (gateway/README.md, "What a check costs"):
        # ~8% less CPU per check one at a time, the same with 8 in flight; one core
        # serves over 10,000 checks a second, far beyond the shared budgets' traffic. It
        # also matches the Kubernetes pods' CPU limit (1), which GOMAXPROCS=2 overrode.
        "GOMAXPROCS": str(gomaxprocs),
    }
    if tls is not None:
        env.update({
            "GRPC_SERVER_USE_TLS": "true", "GRPC_SERVER_TLS_CERT": str(tls.cert_file),
            "GRPC_SERVER_TLS_KEY": str(tls.key_file),
            "GRPC_CLIENT_TLS_CACERT": str(tls.client_ca_file),
            "GRPC_CLIENT_TLS_SAN": tls.client_san,
        })
    return env


def main(argv: Sequence[str] | None = None) -> int:
    """Write the service's config from a limits file; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m usdcarb.ratelimit.service",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--limits", type=Path, default=DEFAULT_LIMITS_FILE)
    parser.add_argument("--out", type=Path, required=True,
                        help="the runtime root: OUT/ratelimit/config/ (the service), OUT/envoy/ (the gateway)")
    parser.add_argument("--stdout", action="store_true", help="print the YAML instead")
    parser.add_argument("--divided", action="store_true",
                        help="the gateways divide the per-caller limits (--local-cluster)")
    args = parser.parse_args(argv)
    limits = load_limits(args.limits)
    if args.stdout:
        sys.stdout.write(render_config(limits))
    else:
        sys.stdout.write(f"{write_config(limits, args.out, divided=args.divided)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
