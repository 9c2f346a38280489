"""The whole mesh on one machine: PostgreSQL + TimescaleDB, Redis, every service, Envoy.

``python -m usdcarb.devstack.stack up|down|status [--root DIR]``. ``up`` starts what is
not running, waits until every service reports SERVING and the gateway routes to all of
them, then records each process in ``<root>/stack.json``; ``down`` stops exactly the
processes recorded there (by PID, after checking each PID still runs what we started).
Everything binds 127.0.0.1; data and logs stay under the root folder.

For fault tests (the soak, issue 19): ``Stack(replicas=2)`` runs two processes of every
service behind Envoy, ``Stack(hot_restart=True)`` lets ``restart_envoy`` hand Envoy's
listeners to a new epoch, and ``kill_process``/``start_service``, ``restart_postgres``
and ``restart_redis`` fail and restore one part in place (same ports, same data).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from usdcarb.devstack import dbops
from usdcarb.devstack.dbops import DbopsSettings
from usdcarb.devstack.ports import (
    DevstackError,
    child_pids,
    free_port,
    poll_http,
    process_name,
    signal_pid,
    wait_gone,
)
from usdcarb.devstack.postgres import PostgresServer, StopMode
from usdcarb.devstack.redis import RedisServer
from usdcarb.observability import monitoring
from usdcarb.observability.monitoring import MonitoringSettings
from usdcarb.platform import tls

if TYPE_CHECKING:
    from usdcarb.gateway.config import GatewayConfig

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
SERVICES = ("strategy", "ingestion", "validation", "backtest", "notification", "identity",
            "ratelimit")
DATABASE = "usdcarb"
CLIENT = "dev-client"  # the certificate tests and tools present straight to a service's port
START_TIMEOUT_S = 90.0


@dataclass
class ProcessInfo:
    """A process the stack started."""

    pid: int
    port: int
    marker: str  # a string its command line contains, checked before signalling it
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class StackInfo:
    """Where everything runs; saved as stack.json."""

    root: str
    gateway: str
    admin: str
    dsn: str
    redis_url: str
    processes: dict[str, ProcessInfo]
    # The dev CA (PEM) that every certificate of the stack chains to, and a client
    # certificate it issued for calls straight to a service's port; empty: plaintext stack.
    ca: str = ""
    client_cert: str = ""
    client_key: str = ""
    # Prometheus' and Alertmanager's base URLs; empty: the stack runs without them.
    prometheus: str = ""
    alertmanager: str = ""

    @property
    def gateway_target(self) -> str:
        """Return host:port of the gateway (for gRPC channels)."""
        return self.gateway.split("://", 1)[1]

    def ssl_context(self) -> ssl.SSLContext | None:
        """Return an HTTPS client context trusting the dev CA (None for a plaintext stack)."""
        return tls.ssl_context(Path(self.ca)) if self.ca else None

    def channel_credentials(self, *, client_cert: bool = False) -> grpc.ChannelCredentials | None:
        """Return gRPC credentials trusting the dev CA, with the stack's client certificate
        when ``client_cert`` (a service's own port requires one); None when plaintext."""
        if not self.ca:
            return None
        if not client_cert:
            return tls.channel_credentials(Path(self.ca))
        return tls.channel_credentials(Path(self.ca), Path(self.client_cert),
                                       Path(self.client_key))

    def _target(self, service: str | None, port: int | None) -> tuple[str, list[Any]]:
        if service is None:
            return self.gateway_target, []
        port = self.processes[service].port if port is None else port
        return f"127.0.0.1:{port}", [("grpc.ssl_target_name_override", service)]

    def channel(self, service: str | None = None, *, port: int | None = None) -> grpc.Channel:
        """Open a blocking gRPC channel to the gateway, or straight to ``service`` (at its
        port, or ``port`` for another replica): mutual TLS with the client certificate,
        the service's name checked."""
        target, options = self._target(service, port)
        credentials = self.channel_credentials(client_cert=service is not None)
        if credentials is None:
            return grpc.insecure_channel(target)
        return grpc.secure_channel(target, credentials, options=options)

    def aio_channel(self, service: str | None = None, *,
                    port: int | None = None) -> grpc.aio.Channel:
        """Open a grpc.aio channel, as ``channel`` does."""
        target, options = self._target(service, port)
        credentials = self.channel_credentials(client_cert=service is not None)
        if credentials is None:
            return grpc.aio.insecure_channel(target)
        return grpc.aio.secure_channel(target, credentials, options=options)

    def tls_env(self, service: str) -> dict[str, str]:
        """Return the TLS settings of one more ``service`` process joining this stack: its
        certificate from the dev CA (or plaintext on a plaintext stack)."""
        pki = tls.DevPki(Path(self.ca).parent) if self.ca else None
        return _tls_env(f"USDCARB_{service.upper()}_", service, pki)

    def service_env(self, service: str) -> dict[str, str]:
        """Return the settings of one more ``service`` process (a replica) joining this
        stack as its own process runs: peers, database, Redis, TLS (not its ports)."""
        pki = tls.DevPki(Path(self.ca).parent) if self.ca else None
        return {**_peers(service, _peer_targets(self.processes)),
                **_service_settings(service, self.dsn, self.redis_url, pki)}

    def save(self, path: Path) -> None:
        data = {**self.__dict__, "processes": {k: v.__dict__ for k, v in self.processes.items()}}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> StackInfo:
        data = json.loads(path.read_text())
        data["processes"] = {k: ProcessInfo(**v) for k, v in data["processes"].items()}
        return cls(**data)


def _alive(info: ProcessInfo) -> bool:
    try:
        cmdline = Path(f"/proc/{info.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return info.marker in cmdline


def _started(proc: subprocess.Popen[bytes], marker: str, log: Path, **extra: Any) -> ProcessInfo:
    """Wait until the child has exec'd (its cmdline shows ``marker``) and describe it.

    Right after fork the child still shows our own command line, so a liveness check
    by marker would call it dead.
    """
    info = ProcessInfo(proc.pid, extra.pop("port"), marker, extra)
    deadline = time.monotonic() + 10
    while not _alive(info):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise DevstackError(f"expected {marker} to start, got exit {proc.poll()}:\n{_tail(log)}")
        time.sleep(0.01)
    return info


def _envoy_binary() -> str:
    candidate = Path(sys.executable).with_name("envoy")
    if candidate.exists():
        return str(candidate)
    raise DevstackError(f"expected envoy next to {sys.executable}, got none (make venv)")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Stack:
    """Start and stop the local mesh rooted at ``root``."""

    def __init__(
        self, root: Path, *, gateway_port: int = 8080, admin_port: int = 0,
        fast_postgres: bool = False, env: Mapping[str, str] | None = None,
        replay_data: Path | None = None, tls: bool = True, jwks_cache_s: int = 300,
        monitoring: MonitoringSettings | None = None,
        dbops: DbopsSettings | None = None,
        replicas: int = 1, hot_restart: bool = False,
    ) -> None:
        self.root = root.resolve()
        # TLS on: HTTPS at the gateway, mutual TLS between Envoy and services and between
        # services, with certificates from a dev CA under <root>/tls. Off: plaintext
        # everywhere (asked for explicitly; e.g. the TLS-cost benchmark's baseline).
        self.tls = tls
        self.pki_root = self.root / "tls"
        self.gateway_port = gateway_port
        self.admin_port = admin_port
        self.fast_postgres = fast_postgres
        self.extra_env = dict(env or {})
        self.replay_data = replay_data
        # How long Envoy keeps identity's JWKS (refreshed in the background when it
        # expires): identity publishes a new key key_publish_lead_s (360 s) before it signs.
        self.jwks_cache_s = jwks_cache_s
        # Prometheus + Alertmanager with these intervals; None (the default of test
        # stacks, `stack up --no-monitoring`) leaves them out.
        self.monitoring = monitoring
        # pgBackRest archiving + the backup agent, and the read replica (devstack/dbops.py);
        # None (the default of test stacks, `stack up --no-backups --no-replica`): neither.
        self.dbops = dbops
        # Processes per service (keys "<svc>", "<svc>-2", ...), each its own ports; Envoy's
        # cluster has them all and peers fail over between them. Test stacks: 1.
        if replicas < 1:
            raise ValueError(f"expected replicas >= 1, got {replicas}")
        self.replicas = replicas
        # Envoy started for hot restart (restart_envoy: a child epoch takes the listeners
        # over from its parent); False (test stacks): --disable-hot-restart.
        self.hot_restart = hot_restart
        self.monitoring_dir = self.root / "monitoring"
        self.state_file = self.root / "stack.json"
        self.logs = self.root / "logs"

    # ----------------------------------------------------------------- up
    def up(self) -> StackInfo:
        """Start the stack (or return the running one) and wait until it serves."""
        if self.state_file.exists():
            info = StackInfo.load(self.state_file)
            if all(_alive(p) for p in info.processes.values()) and self._postgres().attach():
                logger.info("stack already running under %s", self.root)
                return info
            logger.info("stack.json is stale: stopping what is left, then starting afresh")
            self.down()
        self.logs.mkdir(parents=True, exist_ok=True)
        # The first user, an admin, from the environment (identity refuses the dev default
        # password outside dev/test); identity starts before Envoy, which fetches its JWKS.
        self.extra_env.setdefault(
            "USDCARB_IDENTITY_BOOTSTRAP_ADMIN_USERNAME",
            os.environ.get("USDCARB_IDENTITY_BOOTSTRAP_ADMIN_USERNAME", "admin"))
        processes: dict[str, ProcessInfo] = {}
        try:
            pg = self._postgres()
            dbops.prepare_primary(self.root, pg, self.dbops)
            pg.start()
            pg.create_database(DATABASE)
            processes["postgres"] = ProcessInfo(pg.pid or 0, pg.port, "postgres")
            extras, extras_env = dbops.start(self.root, pg, self.dbops, self.logs)
            for name, (pid, port, marker, extra) in extras.items():
                processes[name] = ProcessInfo(pid, port, marker, extra)
            self.extra_env = {**extras_env, **self.extra_env}
            redis = RedisServer(self.root / "redis")
            redis.start()
            processes["redis"] = ProcessInfo(redis.pid or 0, redis.port, "redis-server")
            dsn = pg.dsn(DATABASE)
            # The only stand-in: the exchange replay server, answering ccxt's real
            # requests from recorded data (the committed samples unless told otherwise).
            pki = self._pki() if self.tls else None
            processes["replay"] = self._start_replay()
            self.extra_env.setdefault(
                "USDCARB_INGESTION_REPLAY_URL", f"http://127.0.0.1:{processes['replay'].port}")
            self.extra_env.setdefault("USDCARB_INGESTION_RATE_LIMIT_SCALE", "0.1")
            ports = {name: free_port() for name in SERVICES}
            if self.monitoring is not None:
                self._alert_receiver_env(free_port())
            keys = {name: [replica_key(name, n) for n in range(1, self.replicas + 1)]
                    for name in SERVICES}
            replica_ports = {key: ports[name] if key == name else free_port()
                             for name in SERVICES for key in keys[name]}
            peers = {name: _target([replica_ports[k] for k in keys[name]]) for name in SERVICES}
            # Every replica at once, as a deployment's would (migrations take an advisory
            # lock; the first admin is made by whichever identity replica gets there first).
            for name in SERVICES:
                for key in keys[name]:
                    processes[key] = self._start_service(
                        name, ports, dsn, redis.url, pki, key=key, port=replica_ports[key],
                        peers=peers)
            for name in SERVICES:
                for key in keys[name]:
                    self._wait_serving(name, processes[key], pki)
            gw = self.gateway_port or free_port()
            admin = self.admin_port or free_port()
            processes["envoy"] = self._start_envoy(gw, admin, processes, pki)
            self._wait_gateway(gw, admin, processes["envoy"])
            # Envoy fetches the JWKS from identity through its own listener: wait for it,
            # or the first token checks would fail.
            def fetched(_: int, body: bytes) -> bool:
                return any(line.startswith("cluster.jwks.upstream_rq_200: ")
                           and not line.endswith(" 0")
                           for line in body.decode().splitlines())

            if not poll_http(f"http://127.0.0.1:{admin}/stats?filter=jwks", fetched,
                             timeout_s=START_TIMEOUT_S):
                raise DevstackError("expected the gateway to fetch the JWKS in time")
            if self.monitoring is not None:
                processes.update(self._start_monitoring(self.monitoring, processes, pki))
        except BaseException:
            partial = StackInfo(str(self.root), "", "", "", "", processes)
            partial.save(self.state_file)
            self.down()
            raise
        info = StackInfo(
            root=str(self.root), gateway=f"{'https' if pki else 'http'}://127.0.0.1:{gw}",
            admin=f"http://127.0.0.1:{admin}", dsn=dsn, redis_url=redis.url,
            processes=processes,
            ca=str(pki.ca) if pki else "",
            client_cert=str(pki.cert(CLIENT)) if pki else "",
            client_key=str(pki.key(CLIENT)) if pki else "",
            prometheus=(f"http://127.0.0.1:{processes['prometheus'].port}"
                        if "prometheus" in processes else ""),
            alertmanager=(f"http://127.0.0.1:{processes['alertmanager'].port}"
                          if "alertmanager" in processes else ""),
        )
        info.save(self.state_file)
        return info

    # ----------------------------------------------------------------- monitoring
    def _alert_receiver_env(self, port: int) -> None:
        """Open the notification service's alert receiver for Alertmanager: a port and a
        fresh bearer token only the two of them read."""
        token = self.monitoring_dir / "alert-token"
        monitoring.new_token(token)
        self.extra_env["USDCARB_NOTIFICATION_ALERT_PORT"] = str(port)
        self.extra_env["USDCARB_NOTIFICATION_ALERT_TOKEN_FILE"] = str(token)

    def _start_monitoring(self, settings: MonitoringSettings,
                          processes: Mapping[str, ProcessInfo],
                          pki: tls.DevPki | None) -> dict[str, ProcessInfo]:
        """Start Alertmanager, then Prometheus scraping every process of the stack."""
        d = self.monitoring_dir
        (d / "prometheus-data").mkdir(parents=True, exist_ok=True)
        (d / "alertmanager-data").mkdir(parents=True, exist_ok=True)
        prom_port, am_port = free_port(), free_port()
        scheme = "https" if pki else "http"
        alert_port = int(self.extra_env["USDCARB_NOTIFICATION_ALERT_PORT"])
        processes["notification"].extra["alert_port"] = alert_port
        receiver = monitoring.AlertReceiver(
            url=f"{scheme}://127.0.0.1:{alert_port}{monitoring.ALERT_PATH}",
            token_file=Path(self.extra_env["USDCARB_NOTIFICATION_ALERT_TOKEN_FILE"]),
            ca_file=pki.ca if pki else None, cert_file=pki.cert("alertmanager") if pki else None,
            key_file=pki.key("alertmanager") if pki else None)
        am_config = d / "alertmanager.yml"
        am_config.write_text(json.dumps(monitoring.alertmanager_config(settings, receiver),
                                        indent=1))
        targets = d / "targets.json"
        monitoring.write_targets(targets, processes)
        rules = d / "rules"
        monitoring.copy_rules(rules, settings.alert_for_override_s)
        prom_config = d / "prometheus.yml"
        prom_config.write_text(json.dumps(monitoring.prometheus_config(
            settings=settings, rules_dir=rules, targets_file=targets,
            alertmanager_port=am_port, prometheus_port=prom_port), indent=1))
        started: dict[str, ProcessInfo] = {}
        am_log = self.logs / "alertmanager.log"
        am = self._spawn([monitoring.binary(monitoring.ALERTMANAGER),
                          f"--config.file={am_config}",
                          f"--storage.path={d / 'alertmanager-data'}",
                          f"--web.listen-address=127.0.0.1:{am_port}",
                          "--cluster.listen-address=",  # no gossip port: one instance
                          "--log.level=warn"], am_log)
        started["alertmanager"] = _started(am, str(am_config), am_log, port=am_port)
        prom_log = self.logs / "prometheus.log"
        prom = self._spawn([monitoring.binary(monitoring.PROMETHEUS),
                            f"--config.file={prom_config}",
                            f"--storage.tsdb.path={d / 'prometheus-data'}",
                            f"--storage.tsdb.retention.time={settings.retention}",
                            f"--web.listen-address=127.0.0.1:{prom_port}",
                            "--web.enable-lifecycle", "--log.level=warn"], prom_log)
        started["prometheus"] = _started(prom, str(prom_config), prom_log, port=prom_port)
        monitoring.wait_ready(f"http://127.0.0.1:{am_port}/-/ready", am, am_log)
        monitoring.wait_ready(f"http://127.0.0.1:{prom_port}/-/ready", prom, prom_log)
        return started

    def _spawn(self, args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
        log = log_path.open("ab")
        try:
            return subprocess.Popen(args, cwd=self.root, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=log, start_new_session=True)
        finally:
            log.close()

    # ----------------------------------------------------------------- one service
    def stop_service(self, name: str) -> None:
        """Stop one service of the running stack (SIGTERM, as a crash-free restart would)."""
        info = StackInfo.load(self.state_file)
        proc = info.processes[name]
        if _alive(proc):
            os.kill(proc.pid, signal.SIGTERM)
        _wait_gone(proc, 20.0)

    def start_service(self, name: str) -> ProcessInfo:
        """Start one stopped service (or replica: "<svc>-2") again on its former ports and
        wait until it serves."""
        info = StackInfo.load(self.state_file)
        old = info.processes[name]
        if _alive(old):
            return old
        key, name = name, service_of(name)
        pki = tls.DevPki(Path(info.ca).parent) if info.ca else None
        ports = {n: info.processes[n].port for n in SERVICES if n in info.processes}
        if "alert_port" in old.extra:  # the same receiver port and token as before
            self.extra_env["USDCARB_NOTIFICATION_ALERT_PORT"] = str(old.extra["alert_port"])
            self.extra_env["USDCARB_NOTIFICATION_ALERT_TOKEN_FILE"] = str(
                self.monitoring_dir / "alert-token")
        proc = self._start_service(name, ports, info.dsn, info.redis_url, pki,
                                   metrics_port=old.extra.get("metrics_port"), key=key,
                                   port=old.port, peers=_peer_targets(info.processes))
        proc.extra = {**old.extra, **proc.extra}
        self._wait_serving(name, proc, pki)
        info.processes[key] = proc
        info.save(self.state_file)
        return proc

    def kill_process(self, key: str) -> int:
        """SIGKILL one process of the running stack (a service replica: "backtest-2") and
        the processes of its session (engine workers), as a crashed container would end;
        return its pid. ``start_service`` brings it back on the same ports."""
        info = StackInfo.load(self.state_file)
        proc = info.processes[key]
        if not _alive(proc):
            raise DevstackError(f"expected {key} (pid {proc.pid}) running, got it gone")
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(proc.pid) == proc.pid:  # started in a session of its own
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                os.kill(proc.pid, signal.SIGKILL)
        _wait_gone(proc, 10.0)
        return proc.pid

    def restart_postgres(self, mode: StopMode = "fast") -> ProcessInfo:
        """Stop PostgreSQL (``pg_ctl stop -m fast|immediate``; immediate is a crash: the
        start runs recovery) and start it again on the same port and data directory."""
        info = StackInfo.load(self.state_file)
        pg = self._postgres()
        if not pg.attach() or pg.pid != info.processes["postgres"].pid:
            raise DevstackError("expected the stack's postmaster running, got none")
        pg.stop(mode)
        dbops.prepare_primary(self.root, pg, self.dbops)
        pg.start()
        info = StackInfo.load(self.state_file)
        info.processes["postgres"] = ProcessInfo(pg.pid or 0, pg.port, "postgres")
        info.save(self.state_file)
        return info.processes["postgres"]

    def restart_redis(self, *, kill: bool = True) -> ProcessInfo:
        """SIGKILL Redis (``kill``; else SIGTERM) and start it again on the same port and
        data directory: it reloads its AOF (every write acknowledged more than ~1 s before
        the kill is there)."""
        info = StackInfo.load(self.state_file)
        old = info.processes["redis"]
        if not _alive(old):
            raise DevstackError(f"expected redis (pid {old.pid}) running, got it gone")
        children = child_pids(old.pid)  # an AOF rewrite child would outlive it
        os.kill(old.pid, signal.SIGKILL if kill else signal.SIGTERM)
        _wait_gone(old, 30.0)
        for child in children:
            if (process_name(child) or "").startswith("redis"):
                signal_pid(child, signal.SIGKILL)
        wait_gone(children, timeout=5)
        deadline = time.monotonic() + 10.0
        while True:
            # A save child forked just before the kill holds the listening socket until it
            # exits (seen in a soak: "bind: Address already in use"); the port comes back.
            redis = RedisServer(self.root / "redis", port=old.port)
            try:
                redis.start()
                break
            except DevstackError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.25)
        info = StackInfo.load(self.state_file)
        info.processes["redis"] = ProcessInfo(redis.pid or 0, redis.port, "redis-server")
        info.save(self.state_file)
        return info.processes["redis"]

    def _pki(self) -> tls.DevPki:
        """The dev CA and its certificates (kept while valid): the gateway's for localhost,
        the one Envoy presents to services, one per service, one for direct callers."""
        leaves: dict[str, tuple[str, ...]] = {
            "gateway": tls.LOCALHOST, "envoy": ("envoy",), CLIENT: (CLIENT,)}
        leaves.update({name: tls.service_names(name) for name in SERVICES})
        if self.monitoring is not None:
            leaves["alertmanager"] = ("alertmanager",)  # its client certificate to notification
        return tls.ensure_dev_pki(self.pki_root, leaves)

    def _postgres(self) -> PostgresServer:
        return PostgresServer(self.root / "pg", fast=self.fast_postgres)

    def _start_service(
        self, name: str, ports: Mapping[str, int], dsn: str, redis_url: str,
        pki: tls.DevPki | None, *, metrics_port: int | None = None, key: str | None = None,
        port: int | None = None, peers: Mapping[str, int | str] | None = None,
    ) -> ProcessInfo:
        """Start ``name`` (as replica ``key``, default the first, on ``port``, default
        ``ports[name]``); it reaches the others at ``peers`` (default ``ports``)."""
        key = key or name
        port, metrics = port or ports[name], metrics_port or free_port()
        if name == "ratelimit":
            return self._start_ratelimit(port, metrics, redis_url, pki, log_name=key)
        prefix = f"USDCARB_{name.upper()}_"
        env = {
            **_peers(name, peers or ports),
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                str(REPO / p) for p in ("services", "gen/python", "clients/python")),
            **_service_settings(name, dsn, redis_url, pki),
            f"{prefix}GRPC_PORT": str(port),
            f"{prefix}METRICS_PORT": str(metrics),
            **self.extra_env,
        }
        if key != name:  # Alertmanager's receiver port is replica 1's alone
            env.pop("USDCARB_NOTIFICATION_ALERT_PORT", None)
        log = (self.logs / f"{key}.log").open("ab")
        module = f"usdcarb.{name}.main"
        proc = subprocess.Popen(
            [sys.executable, "-m", module], env=env, cwd=REPO, stdin=subprocess.DEVNULL,
            stdout=log, stderr=log, start_new_session=True,
        )
        log.close()
        return _started(proc, module, self.logs / f"{key}.log", port=port, metrics_port=metrics)

    def _start_replay(self) -> ProcessInfo:
        port = free_port()
        log_path = self.logs / "replay.log"
        log = log_path.open("ab")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            str(REPO / p) for p in ("services", "gen/python"))}
        args = [sys.executable, "-m", "usdcarb.replay", "--port", str(port)]
        if self.replay_data is not None:
            args += ["--data", str(self.replay_data)]
        proc = subprocess.Popen(args, env=env, cwd=REPO, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True)
        log.close()
        info = _started(proc, "usdcarb.replay", log_path, port=port)
        # Any answer, even an error status, means it is up.
        if not poll_http(f"http://127.0.0.1:{port}/_replay/catalog", lambda _s, _b: True,
                         timeout_s=START_TIMEOUT_S, alive=lambda: _alive(info)):
            raise DevstackError(f"expected the replay server up:\n{_tail(log_path)}")
        return info

    def _start_ratelimit(self, port: int, metrics: int, redis_url: str,
                         pki: tls.DevPki | None, *, log_name: str = "ratelimit") -> ProcessInfo:
        """Envoy's rate limit service (Go, envoyproxy/ratelimit) on the stack's Redis, with
        its config from the limits file (USDCARB_RATELIMIT_LIMITS_FILE, default the
        package's) under <root>/ratelimit: rewrite it there (``python -m
        usdcarb.ratelimit.service --limits F --out <root>/ratelimit``) and it reloads, and
        so does the gateway's per-caller limits (<root>/ratelimit/envoy, which Envoy
        watches)."""
        from usdcarb.ratelimit import limits, service

        limits_file = self.extra_env.get("USDCARB_RATELIMIT_LIMITS_FILE")
        runtime = self.root / "ratelimit"
        service.write_config(
            limits.load_limits(Path(limits_file) if limits_file else limits.DEFAULT_LIMITS_FILE),
            runtime)
        http_port = free_port()
        rls_tls = None if pki is None else service.RlsTls(
            cert_file=pki.cert("ratelimit"), key_file=pki.key("ratelimit"), client_ca_file=pki.ca)
        env = {**os.environ, **service.environment(
            runtime_root=runtime, redis_url=redis_url, grpc_port=port, http_port=http_port,
            debug_port=free_port(), metrics_port=metrics, tls=rls_tls)}
        binary = str(service.binary())
        log_path = self.logs / f"{log_name}.log"
        log = log_path.open("ab")
        proc = subprocess.Popen([binary], env=env, cwd=runtime, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True)
        log.close()
        return _started(proc, binary, log_path, port=port, metrics_port=metrics,
                        http_port=http_port)

    def _wait_serving(self, name: str, info: ProcessInfo, pki: tls.DevPki | None) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        if name == "ratelimit":  # its HTTP /healthcheck: OK once Redis answers
            url = f"http://127.0.0.1:{info.extra['http_port']}/healthcheck"
            if poll_http(url, lambda status, body: status == 200 and body.strip() == b"OK",
                         timeout_s=START_TIMEOUT_S, alive=lambda: _alive(info)):
                return
            if not _alive(info):
                raise DevstackError(
                    f"expected ratelimit to start, got:\n{_tail(self.logs / 'ratelimit.log')}")
            raise DevstackError(f"expected ratelimit healthy within {START_TIMEOUT_S}s")
        target = f"127.0.0.1:{info.port}"
        # Reconnect often: the port opens only once the service has started, and grpc's
        # default backoff after the first refused connect (1 s, growing) would report
        # SERVING seconds after it was.
        backoff = [("grpc.initial_reconnect_backoff_ms", 50),
                   ("grpc.min_reconnect_backoff_ms", 50), ("grpc.max_reconnect_backoff_ms", 100)]
        channel = grpc.insecure_channel(target, options=backoff) if pki is None else \
            grpc.secure_channel(
                target, tls.channel_credentials(pki.ca, pki.cert(CLIENT), pki.key(CLIENT)),
                options=[("grpc.ssl_target_name_override", name), *backoff])
        with channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if not _alive(info):
                    raise DevstackError(
                        f"expected {name} to start, got it exited:\n{_tail(self.logs / f'{name}.log')}"
                    )
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise DevstackError(f"expected {name} SERVING within {START_TIMEOUT_S}s")
                time.sleep(0.05)

    def gateway_config(self, gw: int, admin: int, processes: Mapping[str, ProcessInfo],
                       pki: tls.DevPki | None) -> GatewayConfig:
        """Return the gateway's config: listening on ``gw`` (admin ``admin``), routing to
        ``processes``, TLS from ``pki`` (None: plaintext). The benchmarks derive their
        variants from it (e.g. the same gateway without rate limits)."""
        from usdcarb.gateway.config import GatewayConfig, GatewayTls
        from usdcarb.ratelimit import service

        ports: dict[str, int | str] = {"gateway": gw, "admin": admin}
        # Every replica of a backend is an endpoint of its cluster.
        replicas = _replica_ports(processes)
        ports.update({n: ",".join(f"127.0.0.1:{p}" for p in replicas[n])
                      for n in SERVICES if n != "ratelimit"})
        return GatewayConfig(
            descriptor_path=REPO / "gen/descriptor/usdcarb.binpb",
            # Keys from identity (GetJwks) through this very listener, cached for less than
            # identity's publish lead time, so a rotated key is known before it signs.
            jwks_mode="remote",
            # Over TLS (to "localhost", the name the gateway's certificate has) when on.
            jwks_uri=(f"https://localhost:{gw}/.well-known/jwks.json" if pki else
                      f"http://127.0.0.1:{gw}/.well-known/jwks.json"),
            jwks_ca_file=pki.ca if pki else GatewayConfig.jwks_ca_file,
            tls=GatewayTls.from_dir(pki.root) if pki else None,
            jwks_cache_duration_s=self.jwks_cache_s,
            ratelimit_address=",".join(f"127.0.0.1:{p}" for p in replicas["ratelimit"]),
            # Written with the service's config (_start_ratelimit); reloaded on change.
            local_limits_dir=str(service.envoy_dir(self.root / "ratelimit")),
            route_authorization=True,
            access_log_path=str(self.logs / "gateway-access.log"),
        ).with_ports(ports)

    def _start_envoy(self, gw: int, admin: int, processes: Mapping[str, ProcessInfo],
                     pki: tls.DevPki | None) -> ProcessInfo:
        from usdcarb.gateway.config import write_envoy_config

        cfg = self.gateway_config(gw, admin, processes, pki)
        config = write_envoy_config(cfg, self.root / "envoy.yaml", base_dir=REPO)
        if not self.hot_restart:
            proc = self._spawn_envoy(config, ["--disable-hot-restart"])
            return _started(proc, str(config), self.logs / "envoy.log", port=gw,
                            admin_port=admin)
        # Epoch 0 with a base id of its own (other stacks' Envoys run beside it), written
        # where restart_envoy reads it for the next epoch.
        base_id_file = self.root / "envoy.base-id"
        base_id_file.unlink(missing_ok=True)
        proc = self._spawn_envoy(config, ["--use-dynamic-base-id", "--base-id-path",
                                          str(base_id_file), *self._hot_restart_args(0)])
        info = _started(proc, str(config), self.logs / "envoy.log", port=gw, admin_port=admin,
                        epoch=0)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (base_id_file.exists() and base_id_file.read_text().strip()):
            if not _alive(info) or time.monotonic() > deadline:
                raise DevstackError(f"expected envoy to write its base id:\n"
                                    f"{_tail(self.logs / 'envoy.log')}")
            time.sleep(0.05)
        info.extra["base_id"] = int(base_id_file.read_text().strip())
        return info

    # How long a hot-restarted Envoy's parent drains its connections, then is shut down.
    ENVOY_DRAIN_S = 5
    ENVOY_PARENT_SHUTDOWN_S = 10

    def _hot_restart_args(self, epoch: int) -> list[str]:
        return ["--restart-epoch", str(epoch), "--drain-time-s", str(self.ENVOY_DRAIN_S),
                "--parent-shutdown-time-s", str(self.ENVOY_PARENT_SHUTDOWN_S)]

    def _spawn_envoy(self, config: Path, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.logs / "envoy.log").open("ab")
        try:
            return subprocess.Popen(
                [_envoy_binary(), "-c", str(config), *args, "--log-level", "warn",
                 "--file-flush-interval-msec", "1000",
                 "--log-path", str(self.logs / "envoy.log")],
                cwd=self.root, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()

    def restart_envoy(self, *, wait_parent: bool = True) -> ProcessInfo:
        """Hot-restart the gateway (a stack started with ``hot_restart``): Envoy's next
        epoch, on the same config and base id, takes the listening sockets over from the
        running one, which drains its connections (ENVOY_DRAIN_S) and exits
        (ENVOY_PARENT_SHUTDOWN_S). The listeners keep accepting throughout. Return the new
        process once it is LIVE (and, with ``wait_parent``, once the parent is gone)."""
        info = StackInfo.load(self.state_file)
        old = info.processes["envoy"]
        if "base_id" not in old.extra:
            raise DevstackError("expected a stack started with hot_restart=True, got an "
                                "Envoy started with --disable-hot-restart")
        epoch = int(old.extra.get("epoch", 0)) + 1
        config = self.root / "envoy.yaml"
        proc = self._spawn_envoy(config, ["--base-id", str(old.extra["base_id"]),
                                          *self._hot_restart_args(epoch)])
        new = _started(proc, str(config), self.logs / "envoy.log", port=old.port,
                       **{**old.extra, "epoch": epoch})
        admin = old.extra["admin_port"]

        def live(_: int, body: bytes) -> bool:
            server = json.loads(body)
            return bool(server.get("state") == "LIVE" and
                        int(server["command_line_options"]["restart_epoch"]) == epoch)

        if not poll_http(f"http://127.0.0.1:{admin}/server_info", live,
                         timeout_s=START_TIMEOUT_S, alive=lambda: _alive(new)):
            raise DevstackError(f"expected envoy epoch {epoch} LIVE:\n"
                                f"{_tail(self.logs / 'envoy.log')}")
        info.processes["envoy"] = new
        info.save(self.state_file)
        if wait_parent:
            _wait_gone(old, self.ENVOY_PARENT_SHUTDOWN_S + 20.0)
        return new

    def _wait_gateway(self, gw: int, admin: int, info: ProcessInfo) -> None:
        """Wait until Envoy is live and sees every backend healthy."""
        backends = [n for n in SERVICES if n != "ratelimit"]

        def all_healthy(_: int, body: bytes) -> bool:
            healthy = [line.split("::")[0] for line in body.decode().splitlines()
                       if "::health_flags::healthy" in line]
            return all(healthy.count(b) >= self.replicas for b in backends)

        if poll_http(f"http://127.0.0.1:{admin}/clusters", all_healthy,
                     timeout_s=START_TIMEOUT_S, alive=lambda: _alive(info), interval_s=0.2):
            return
        if not _alive(info):
            raise DevstackError(f"expected envoy to start, got:\n{_tail(self.logs / 'envoy.log')}")
        raise DevstackError(f"expected the gateway to see {backends} healthy in time")

    # ----------------------------------------------------------------- down
    def down(self) -> None:
        """Stop every process recorded in stack.json, services before their stores."""
        if not self.state_file.exists():
            return
        info = StackInfo.load(self.state_file)
        procs = info.processes
        order = ["prometheus", "alertmanager", "envoy", *SERVICES,
                 *(k for k in procs if service_of(k) != k), "replay"]
        for name in order:
            if name in procs and _alive(procs[name]):
                os.kill(procs[name].pid, signal.SIGTERM)
        for name in order:
            if name in procs:
                _wait_gone(procs[name], 20.0)
        if "envoy" in procs and "base_id" in procs["envoy"].extra:
            # Envoy leaves its hot-restart shared memory behind when it is stopped.
            shm = Path(f"/dev/shm/envoy_shared_memory_{int(procs['envoy'].extra['base_id']) * 10}")
            shm.unlink(missing_ok=True)
        if "redis" in procs and _alive(procs["redis"]):
            os.kill(procs["redis"].pid, signal.SIGTERM)
            _wait_gone(procs["redis"], 20.0)
        dbops.stop(self.root, procs)
        pg = self._postgres()
        if (self.root / "pg" / "postmaster.pid").exists() and pg.attach():
            pg.stop()
        self.state_file.unlink()

    def status(self) -> dict[str, bool]:
        if not self.state_file.exists():
            return {}
        info = StackInfo.load(self.state_file)
        return {name: _alive(p) for name, p in info.processes.items()}


def _peers(name: str, ports: Mapping[str, int | str]) -> dict[str, str]:
    """Every service learns where the others are: USDCARB_<SVC>_<OTHER>_ADDRESS (a port,
    or a gRPC target naming every replica)."""
    prefix = f"USDCARB_{name.upper()}_"
    return {f"{prefix}{other.upper()}_ADDRESS": p if isinstance(p, str) else f"127.0.0.1:{p}"
            for other, p in ports.items() if other != name}


def replica_key(service: str, n: int) -> str:
    """Return the stack.json key of replica ``n`` (1-based) of ``service``."""
    return service if n == 1 else f"{service}-{n}"


def service_of(key: str) -> str:
    """Return the service a stack.json key runs ("backtest-2" → "backtest")."""
    base, _, n = key.rpartition("-")
    return base if base in SERVICES and n.isdigit() else key


def _target(ports: list[int]) -> str:
    """One replica: 127.0.0.1:P; several: a gRPC target naming all of them (pick_first
    fails over to the next when one is gone)."""
    if len(ports) == 1:
        return f"127.0.0.1:{ports[0]}"
    return "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in ports)


def _replica_ports(processes: Mapping[str, ProcessInfo]) -> dict[str, list[int]]:
    """Return every service's replica ports, replica 1 first."""
    out: dict[str, list[int]] = {}
    for key in sorted(processes, key=lambda k: (service_of(k), len(k), k)):
        if service_of(key) in SERVICES:
            out.setdefault(service_of(key), []).append(processes[key].port)
    return out


def _peer_targets(processes: Mapping[str, ProcessInfo]) -> dict[str, int | str]:
    return {name: _target(ports) for name, ports in _replica_ports(processes).items()}


def _service_settings(name: str, dsn: str, redis_url: str,
                      pki: tls.DevPki | None) -> dict[str, str]:
    """The settings a service of the stack runs with (besides its ports and peers)."""
    prefix = f"USDCARB_{name.upper()}_"
    return {
        f"{prefix}ENV": "dev",
        f"{prefix}DATABASE_URL": dsn,
        f"{prefix}REDIS_URL": redis_url,
        f"{prefix}LOG_JSON": "true",
        # Refused calls reach identity's audit log (identity records its own).
        f"{prefix}AUDIT_STREAM": "false" if name == "identity" else "true",
        **_tls_env(prefix, name, pki),
    }


def _tls_env(prefix: str, name: str, pki: tls.DevPki | None) -> dict[str, str]:
    """The service's TLS settings: its certificate and the CA, or plaintext asked for."""
    if pki is None:
        return {f"{prefix}PLAINTEXT": "true"}
    return {f"{prefix}PLAINTEXT": "false", f"{prefix}TLS_CERT_FILE": str(pki.cert(name)),
            f"{prefix}TLS_KEY_FILE": str(pki.key(name)), f"{prefix}TLS_CA_FILE": str(pki.ca)}


def _wait_gone(info: ProcessInfo, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while _alive(info):
        if time.monotonic() > deadline:
            logger.warning("pid %d did not exit after SIGTERM; sending SIGKILL", info.pid)
            with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                # Started in a session of its own: its group is it and what it spawned
                # (engine processes), which would otherwise outlive it.
                if os.getpgid(info.pid) == info.pid:
                    os.killpg(info.pid, signal.SIGKILL)
                else:
                    os.kill(info.pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="usdcarb-stack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--root", type=Path, default=REPO / ".run" / "stack")
    parser.add_argument("--gateway-port", type=int,
                        default=int(os.environ.get("USDCARB_GATEWAY_PORT", "8080")))
    parser.add_argument("--plaintext", action="store_true",
                        help="no TLS anywhere (default: HTTPS gateway, mutual TLS inside)")
    parser.add_argument("--no-monitoring", action="store_true",
                        default=os.environ.get("USDCARB_MONITORING", "1") in ("0", "no", "false"),
                        help="leave Prometheus and Alertmanager out (USDCARB_MONITORING=0)")
    parser.add_argument("--no-backups", action="store_true",
                        default=os.environ.get("USDCARB_BACKUPS", "1") in ("0", "no", "false"),
                        help="no WAL archiving or backup agent (USDCARB_BACKUPS=0)")
    parser.add_argument("--no-replica", action="store_true",
                        default=os.environ.get("USDCARB_REPLICA", "1") in ("0", "no", "false"),
                        help="no read replica: candle reads go to the primary (USDCARB_REPLICA=0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    stack = Stack(args.root, gateway_port=args.gateway_port, tls=not args.plaintext,
                  monitoring=None if args.no_monitoring else MonitoringSettings(),
                  dbops=DbopsSettings(replica=not args.no_replica, backups=not args.no_backups))
    if args.command == "up":
        started = time.monotonic()
        info = stack.up()
        logger.info("usdcarb stack is up (%.1fs) — everything on 127.0.0.1:", time.monotonic() - started)
        logger.info("  gateway  %s  (REST and gRPC; token: usdcarb dev-token --role analyst)", info.gateway)
        if info.ca:
            logger.info("  dev CA   %s  (curl --cacert, grpcurl -cacert, USDCARB_CA_FILE)", info.ca)
            logger.info("  client   %s / %s  (mTLS straight to a service's port)",
                        info.client_cert, info.client_key)
        logger.info("  admin    %s/stats/prometheus", info.admin)
        for name in SERVICES:
            p = info.processes[name]
            logger.info("  %-12s grpc 127.0.0.1:%d  metrics :%s  pid %d", name, p.port,
                        p.extra.get("metrics_port"), p.pid)
        logger.info("  replay   http://127.0.0.1:%d  (exchange replay server, recorded data)",
                    info.processes["replay"].port)
        logger.info("  postgres %s", info.dsn)
        if "postgres-replica" in info.processes:
            logger.info("  replica  port %d  (hot standby; candle reads while within the lag bound)",
                        info.processes["postgres-replica"].port)
        if "backup" in info.processes:
            logger.info("  backups  %s/pgbackrest  (make backup, make restore TARGET_TIME=...; "
                        "agent metrics :%d)", info.root, info.processes["backup"].port)
        logger.info("  redis    %s", info.redis_url)
        if info.prometheus:
            logger.info("  prometheus   %s  (rules: deploy/monitoring/prometheus/rules)",
                        info.prometheus)
            logger.info("  alertmanager %s  (→ notification's alert receiver)", info.alertmanager)
        logger.info("  logs     %s", Path(info.root) / "logs")
    elif args.command == "down":
        stack.down()
        logger.info("usdcarb stack stopped")
    else:
        for name, alive in stack.status().items():
            logger.info("  %-12s %s", name, "running" if alive else "STOPPED")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
