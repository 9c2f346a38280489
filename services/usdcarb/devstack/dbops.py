"""The stack's database operations: pgBackRest archiving + the backup agent, and the
read replica. ``Stack`` calls these hooks; each part can be left out
(``stack up --no-backups / --no-replica``; test stacks leave both out unless asked).

Layout under the stack root: ``pgbackrest/`` (config, repository, logs), ``pg-replica/``
(the standby's data directory), ``logs/backup.log`` (the agent).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from usdcarb.devstack.pgbackrest import PgBackRest
from usdcarb.devstack.ports import DevstackError, free_port, pid_alive, wait_gone
from usdcarb.devstack.postgres import PostgresServer
from usdcarb.devstack.standby import StandbyServer

logger = logging.getLogger(__name__)

__all__ = ["READ_SERVICES", "DbopsSettings", "backrest", "prepare_primary", "start", "stop"]

# The services whose candle reads the read router may send to the replica.
READ_SERVICES = ("ingestion", "backtest", "validation")
REPLICA = "postgres-replica"
AGENT = "backup"
AGENT_MODULE = "usdcarb.dbops.backup"
REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class DbopsSettings:
    """What the stack runs beside its PostgreSQL."""

    replica: bool = True
    backups: bool = True
    replica_max_lag_s: float = 5.0
    # The agent's schedule: a full backup this often, a differential in between.
    full_every_s: float = 7 * 24 * 3600
    diff_every_s: float = 24 * 3600


def backrest(root: Path, primary: PostgresServer) -> PgBackRest:
    return PgBackRest(root / "pgbackrest", primary)


def prepare_primary(root: Path, primary: PostgresServer, settings: DbopsSettings | None) -> None:
    """Before the primary starts: archive its WAL into the stack's repository."""
    if settings is None or not settings.backups:
        return
    br = backrest(root, primary)
    br.write_config()
    primary.settings.update(br.archive_settings())


def start(root: Path, primary: PostgresServer, settings: DbopsSettings | None,
          logs: Path) -> tuple[dict[str, tuple[int, int, str, dict[str, Any]]], dict[str, str]]:
    """After the primary is up: the stanza, the backup agent and the replica.

    Return the processes started (name -> (pid, port, marker, extra)) and the settings
    the services get (the replica's DSN and lag bound for READ_SERVICES).
    """
    processes: dict[str, tuple[int, int, str, dict[str, Any]]] = {}
    env: dict[str, str] = {}
    if settings is None:
        return processes, env
    started = time.monotonic()
    if settings.backups:
        backrest(root, primary).stanza_create()
        metrics = free_port()
        log_path = logs / "backup.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", AGENT_MODULE, "agent", "--root", str(root),
                 "--metrics-port", str(metrics), "--full-every-s", str(settings.full_every_s),
                 "--diff-every-s", str(settings.diff_every_s)],
                env={**os.environ, "PYTHONPATH": os.pathsep.join(
                    str(REPO / p) for p in ("services", "gen/python"))},
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        processes[AGENT] = (proc.pid, metrics, AGENT_MODULE, {"metrics_port": metrics})
    if settings.replica:
        standby = _start_replica(root, primary)
        processes[REPLICA] = (standby.pid or 0, standby.port, "postgres", {})
        dsn = standby.dsn("usdcarb")
        for name in READ_SERVICES:
            env[f"USDCARB_{name.upper()}_REPLICA_DATABASE_URL"] = dsn
            env[f"USDCARB_{name.upper()}_REPLICA_MAX_LAG_S"] = str(settings.replica_max_lag_s)
    logger.info("dbops ready in %.1fs: %s", time.monotonic() - started,
                ", ".join(processes) or "nothing")
    return processes, env


def _start_replica(root: Path, primary: PostgresServer) -> StandbyServer:
    """Start the standby (copying the primary the first time) and give it 20 s to catch
    up. One that cannot ever (the primary no longer has the WAL it needs) is copied
    afresh; one still replaying keeps at it while the services read from the primary
    (their routers wait until it is within the lag bound)."""
    data_dir = root / "pg-replica"
    standby = StandbyServer(data_dir, primary)
    standby.start()
    try:
        standby.wait_caught_up(timeout_s=20)
    except DevstackError:
        log = standby.log_path.read_text(errors="replace") if standby.log_path.exists() else ""
        if "has already been removed" not in log:
            logger.warning("replica still catching up with the primary; reads use the "
                           "primary until it is within the lag bound")
            return standby
        logger.warning("replica lacks WAL the primary has removed: copying it afresh")
        standby.stop()
        shutil.rmtree(data_dir)
        standby = StandbyServer(data_dir, primary)
        standby.start()
    return standby


def stop(root: Path, processes: Mapping[str, Any]) -> None:
    """Stop the agent (by its recorded PID, after checking it is ours) and the replica."""
    agent = processes.get(AGENT)
    if agent is not None and pid_alive(agent.pid) and _cmdline_has(agent.pid, AGENT_MODULE):
        os.kill(agent.pid, signal.SIGTERM)
        if wait_gone([agent.pid], timeout=30):
            os.kill(agent.pid, signal.SIGKILL)
    replica_dir = root / "pg-replica"
    if (replica_dir / "postmaster.pid").exists():
        standby = PostgresServer(replica_dir)
        if standby.attach():
            standby.stop()


def _cmdline_has(pid: int, marker: str) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
