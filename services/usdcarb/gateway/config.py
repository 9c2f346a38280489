"""Render the Envoy gateway bootstrap from the API's descriptor set.

One listener serves REST/JSON (transcoded) and h2c gRPC on the same port. The HTTP
filter chain is the one verified in shared/notes/envoy.md:
jwt_authn → local_ratelimit → ratelimit (only with a rate limit service) →
grpc_json_transcoder → router, with cors in front when origins are allowed.

Routes are generated per method: a native gRPC route on ``/usdcarb.v1.Service/Method``
and one route per HTTP rule matching the REST path itself (the transcoder keeps the
incoming route, ``match_incoming_request_route``), so timeouts and rules apply to both
kinds of caller (traps 5, 6, 7 of the note).

    python -m usdcarb.gateway.config --out envoy.yaml [--ports-json ports.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml

from usdcarb.gateway.api import load_services
from usdcarb.gateway.envoy import build_bootstrap, split_address, split_addresses
from usdcarb.ratelimit.limits import DEFAULT_LIMITS_FILE, Limits, load_limits

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER",
    "DEFAULT_UPSTREAMS",
    "GatewayConfig",
    "GatewayTls",
    "render_envoy_config",
    "render_envoy_yaml",
    "write_envoy_config",
]

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_DESCRIPTOR = Path("gen/descriptor/usdcarb.binpb")
DEV_JWKS = Path("gateway/dev-keys/DEV-ONLY-jwks.json")
DEFAULT_ISSUER = "usdcarb-identity"
DEFAULT_AUDIENCE = "usdcarb-api"

# Backend name → address of its gRPC server; the names are the services' short names.
DEFAULT_UPSTREAMS: Mapping[str, str] = MappingProxyType(
    {
        "ingestion": "127.0.0.1:50051",
        "validation": "127.0.0.1:50052",
        "strategy": "127.0.0.1:50053",
        "backtest": "127.0.0.1:50054",
        "notification": "127.0.0.1:50055",
        "identity": "127.0.0.1:50056",
    }
)


@dataclass(frozen=True, kw_only=True)
class GatewayTls:
    """The gateway's TLS files (PEM).

    The listener serves ``cert_file`` (TLS 1.2+, HTTP/2 and HTTP/1.1 by ALPN on one port).
    With ``upstream_mtls`` every backend (and the rate limit service) is reached over
    mutual TLS: Envoy presents ``client_cert_file`` and accepts only a certificate that
    chains to ``ca_file`` and names the backend (its short name). Without it the backends
    are plaintext, for a mesh whose sidecars do mTLS (Istio).
    """

    ca_file: Path
    cert_file: Path
    key_file: Path
    client_cert_file: Path
    client_key_file: Path
    upstream_mtls: bool = True

    @classmethod
    def from_dir(cls, root: Path, *, upstream_mtls: bool = True) -> GatewayTls:
        """Return the files of a dev PKI folder (usdcarb.platform.tls): ca.pem,
        gateway.pem/.key for the listener, envoy.pem/.key as the client certificate."""
        return cls(ca_file=root / "ca.pem", cert_file=root / "gateway.pem",
                   key_file=root / "gateway.key", client_cert_file=root / "envoy.pem",
                   client_key_file=root / "envoy.key", upstream_mtls=upstream_mtls)


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    """Describe one gateway: where it listens, its backends, how it checks tokens.

    Paths are written into the Envoy config as given: relative paths resolve against
    Envoy's working directory, so pass absolute ones unless Envoy runs from the repo root.
    """

    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    admin_port: int = 9901  # admin binds 127.0.0.1 only
    upstreams: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_UPSTREAMS))
    descriptor_path: Path = DEFAULT_DESCRIPTOR
    jwt_issuer: str = DEFAULT_ISSUER
    jwt_audiences: tuple[str, ...] = (DEFAULT_AUDIENCE,)
    jwks_mode: Literal["local", "remote"] = "local"
    jwks_file: Path = DEV_JWKS  # local mode
    jwks_uri: str | None = None  # remote mode, e.g. http://127.0.0.1:8080/.well-known/jwks.json
    jwks_cache_duration_s: int = 300
    jwks_ca_file: Path = Path("/etc/ssl/certs/ca-certificates.crt")  # for an https jwks_uri
    clock_skew_s: int = 30
    ratelimit_address: str | None = None  # host:port of an envoy.service.ratelimit.v3 server
    ratelimit_failure_mode_deny: bool = False
    ratelimit_timeout_ms: int = 100
    # The budgets (usdcarb.ratelimit.limits): ``api`` becomes this gateway's local token
    # buckets, ``heavy`` and ``auth`` the rate limit service's config.
    limits: Limits = field(default_factory=load_limits)
    # False: no rate limiting at all, not even Envoy's local buckets (a benchmark baseline).
    rate_limiting: bool = True
    # Per-caller buckets kept per Envoy process (LRU; an evicted caller starts full again).
    max_dynamic_descriptors: int = 20_000
    # host:port resolving to every gateway replica (a headless Service): each replica then
    # enforces its share of a local limit (local_cluster_rate_limit). None: one gateway.
    local_cluster: str | None = None
    # A folder Envoy watches for the per-caller limits (ECDS files, one per tier, written by
    # usdcarb.ratelimit.service.write_config): a changed limits file applies without a
    # restart. None: the limits above are fixed in the config.
    local_limits_dir: str | None = None
    # Per-route role checks (RBAC on the verified roles claim) from usdcarb.platform.authz;
    # every service checks the same table again. The dev stack and deployments turn it on.
    route_authorization: bool = False
    access_log_path: str | None = None  # None: JSON lines on stdout
    cors_allowed_origins: tuple[str, ...] = ()  # exact origins; none disables CORS
    introspection_backend: str | None = "strategy"  # answers reflection and health
    unary_timeout_s: float = 30.0
    stream_idle_timeout_s: float = 3600.0
    env: Literal["dev", "test", "prod"] = "dev"
    # None: a plaintext listener and plaintext backends (tests with fake backends, benches).
    tls: GatewayTls | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "upstreams", MappingProxyType(dict(self.upstreams)))
        if self.jwks_mode == "remote" and not self.jwks_uri:
            raise ValueError("expected jwks_uri with jwks_mode='remote', got none")
        if self.env == "prod" and self.jwks_mode == "local" and "DEV-ONLY" in str(self.jwks_file):
            raise ValueError(f"expected a production JWKS in prod, got {self.jwks_file}")
        for name, address in self.upstreams.items():
            split_addresses(address, what=f"upstream {name!r}")
        if self.ratelimit_address is not None:
            split_addresses(self.ratelimit_address, what="ratelimit_address")
        if self.local_cluster is not None:
            split_address(self.local_cluster, what="local_cluster")
        if self.max_dynamic_descriptors < 1:
            raise ValueError(f"expected max_dynamic_descriptors >= 1, got {self.max_dynamic_descriptors}")

    def with_ports(self, ports: Mapping[str, int | str]) -> GatewayConfig:
        """Return a copy with ports/addresses from a ``{name: port | "host:port"}`` map.

        Names are backend short names, plus ``gateway``, ``admin`` and ``ratelimit``.
        A bare port means 127.0.0.1.
        """
        upstreams = dict(self.upstreams)
        changes: dict[str, Any] = {}
        for name, value in ports.items():
            address = value if isinstance(value, str) and ":" in value else f"127.0.0.1:{value}"
            if name == "gateway":
                host, port = split_address(address, what=name)
                changes["listen_port"] = port
                if isinstance(value, str):
                    changes["listen_host"] = host
            elif name == "admin":
                changes["admin_port"] = split_address(address, what=name)[1]
            elif name == "ratelimit":
                changes["ratelimit_address"] = address
            else:
                upstreams[name] = address
        return replace(self, upstreams=upstreams, **changes)


def render_envoy_config(cfg: GatewayConfig, *, base_dir: Path | None = None) -> dict[str, Any]:
    """Return the Envoy bootstrap (as a dict ready for YAML/JSON) for ``cfg``.

    A relative ``descriptor_path`` is read from ``base_dir`` (default: the working
    directory) but written as given.
    """
    services = load_services((base_dir or Path.cwd()) / cfg.descriptor_path)
    return build_bootstrap(cfg, services)


class _PlainDumper(yaml.SafeDumper):  # type: ignore[misc]
    """Write every node out in full: routes share policy dicts, and anchors/aliases would
    make the generated config hard to read and diff."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_envoy_yaml(cfg: GatewayConfig, *, header: str = "", base_dir: Path | None = None) -> str:
    """Return the Envoy bootstrap for ``cfg`` as YAML, after an optional comment header."""
    body = str(yaml.dump(render_envoy_config(cfg, base_dir=base_dir), Dumper=_PlainDumper,
                         sort_keys=False, width=100))
    lines = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    return lines + body


def write_envoy_config(
    cfg: GatewayConfig, path: Path, *, header: str = "", base_dir: Path | None = None
) -> Path:
    """Render ``cfg`` to ``path`` (YAML) and return the path."""
    path.write_text(render_envoy_yaml(cfg, header=header, base_dir=base_dir))
    return path


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m usdcarb.gateway.config", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--out", type=Path, required=True, help="YAML file to write")
    p.add_argument(
        "--ports-json", type=Path, help='{"strategy": 50123, "gateway": 8080, "admin": 9901, ...}'
    )
    p.add_argument("--listen-host", default="127.0.0.1")
    p.add_argument("--descriptor", type=Path, help=f"default: <repo>/{DEFAULT_DESCRIPTOR}")
    p.add_argument("--issuer", default=DEFAULT_ISSUER)
    p.add_argument("--audience", action="append", help="repeatable; default usdcarb-api")
    p.add_argument("--jwks-file", type=Path, help=f"local JWKS file; default: <repo>/{DEV_JWKS}")
    p.add_argument("--jwks-uri", help="fetch the JWKS from this URI instead (remote_jwks)")
    p.add_argument("--ratelimit", help="host:port of the rate limit service (enables the filter)")
    p.add_argument("--ratelimit-failure-mode-deny", action="store_true")
    p.add_argument("--limits", type=Path, default=DEFAULT_LIMITS_FILE,
                   help="the limits file (default: the one in usdcarb.ratelimit)")
    p.add_argument("--local-cluster",
                   help="host:port of every gateway replica (headless service): divide the "
                   "per-caller limits among them")
    p.add_argument("--local-limits-dir",
                   help="folder Envoy watches for the per-caller limits (ECDS files from "
                   "`python -m usdcarb.ratelimit.service --out R`: R/envoy): reloaded on change")
    p.add_argument("--route-authorization", action="store_true",
                   help="check each route's roles (usdcarb.platform.authz) at the gateway")
    p.add_argument("--jwks-cache-s", type=int, default=300, help="remote JWKS cache duration")
    p.add_argument("--access-log", help="file for the JSON access log (default stdout)")
    p.add_argument("--cors-origin", action="append", default=[], help="allowed origin, repeatable")
    p.add_argument("--introspection-backend", default="strategy", help="'none' to disable")
    p.add_argument("--env", choices=("dev", "test", "prod"), default="dev")
    p.add_argument("--tls-dir", type=Path,
                   help="serve HTTPS and reach backends over mTLS with this dev PKI folder "
                   "(ca.pem, gateway.pem/.key, envoy.pem/.key); default plaintext")
    p.add_argument(
        "--relative-paths",
        action="store_true",
        help="keep descriptor/JWKS paths relative (Envoy must then run from the repo root)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Write an Envoy config from command-line options; return the exit status."""
    args = _parse_args(argv)

    def resolve(given: Path | None, default: Path) -> Path:
        # Given paths are relative to the caller's directory; defaults to the repository.
        if given is not None:
            return given if args.relative_paths else given.resolve()
        return default if args.relative_paths else REPO_ROOT / default

    cfg = GatewayConfig(
        listen_host=args.listen_host,
        descriptor_path=resolve(args.descriptor, DEFAULT_DESCRIPTOR),
        jwt_issuer=args.issuer,
        jwt_audiences=tuple(args.audience or (DEFAULT_AUDIENCE,)),
        jwks_mode="remote" if args.jwks_uri else "local",
        jwks_file=resolve(args.jwks_file, DEV_JWKS),
        jwks_uri=args.jwks_uri,
        ratelimit_address=args.ratelimit,
        ratelimit_failure_mode_deny=args.ratelimit_failure_mode_deny,
        limits=load_limits(args.limits),
        local_cluster=args.local_cluster,
        local_limits_dir=args.local_limits_dir,
        route_authorization=args.route_authorization,
        jwks_cache_duration_s=args.jwks_cache_s,
        access_log_path=args.access_log,
        cors_allowed_origins=tuple(args.cors_origin),
        introspection_backend=None
        if args.introspection_backend == "none"
        else args.introspection_backend,
        env=args.env,
        tls=None if args.tls_dir is None else GatewayTls.from_dir(args.tls_dir.resolve()),
    )
    if args.ports_json is not None:
        cfg = cfg.with_ports(json.loads(args.ports_json.read_text()))
    header = (
        "Generated by `python -m usdcarb.gateway.config` from the API descriptor set; "
        "do not edit.\n"
        + ("Relative paths: run Envoy from the repository root.\n" if args.relative_paths else "")
        + "Check: envoy --mode validate -c <this file>"
    )
    write_envoy_config(
        cfg, args.out, header=header, base_dir=None if args.descriptor else REPO_ROOT
    )
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
