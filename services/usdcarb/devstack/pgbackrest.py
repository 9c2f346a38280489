"""pgBackRest for a devstack cluster: WAL archiving, full/differential backups, PITR.

The repository, logs, locks and the configuration live under ``root`` (the stack's
``pgbackrest/`` folder); nothing goes to /etc or /var. pgBackRest runs as the cluster's
OS user (``postgres`` when this process is root), as PostgreSQL's ``archive_command``
does. Runbook: docs/backup-and-restore.md.

Retention: ``full_retention`` full backups are kept (older ones expire with their
differentials and the WAL only they need); ``diff_retention`` differentials per full.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from usdcarb.devstack.ports import DevstackError
from usdcarb.devstack.postgres import PostgresServer, Setting

logger = logging.getLogger(__name__)

__all__ = ["BackupInfo", "PgBackRest"]

STANZA = "usdcarb"
BackupType = Literal["full", "diff", "incr"]


def _executable() -> str:
    found = shutil.which("pgbackrest") or "/usr/bin/pgbackrest"
    if not Path(found).exists():
        raise DevstackError("expected pgbackrest installed (make system), got none")
    return found


@dataclass(frozen=True)
class BackupInfo:
    """One backup of the repository, as ``pgbackrest info`` reports it."""

    label: str
    type: str
    start: float  # unix seconds
    stop: float
    size: int  # bytes of the database at backup time
    repo_size: int  # bytes in the repository (compressed, this backup's share)
    wal_start: str
    wal_stop: str


class PgBackRest:
    """Configure and drive pgBackRest for one cluster (the stanza ``usdcarb``)."""

    def __init__(self, root: Path, cluster: PostgresServer, *, full_retention: int = 2,
                 diff_retention: int = 6, process_max: int = 2) -> None:
        self.root = Path(root).resolve()
        self.cluster = cluster
        self.full_retention = full_retention
        self.diff_retention = diff_retention
        self.process_max = process_max

    @property
    def config_path(self) -> Path:
        return self.root / "pgbackrest.conf"

    @property
    def repo_path(self) -> Path:
        return self.root / "repo"

    def archive_settings(self) -> dict[str, Setting]:
        """PostgreSQL settings that archive every WAL segment into the repository."""
        return {
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": (f"{shlex.quote(_executable())} --config="
                                f"{shlex.quote(str(self.config_path))} --stanza={STANZA} "
                                "archive-push %p"),
            # A quiet cluster still closes a segment at least this often, bounding how
            # much committed work a lost data directory can take with it.
            "archive_timeout": 60,
            "max_wal_senders": 10,
            "wal_keep_size": "512MB",
        }

    def write_config(self) -> None:
        """Write pgbackrest.conf for the cluster's current port and data directory."""
        for sub in ("", "repo", "log", "lock", "spool"):
            path = self.root / sub
            path.mkdir(parents=True, exist_ok=True)
            self._chown(path)
        c = self.cluster
        text = (
            "# Written by usdcarb.devstack at every start: edits here are overwritten.\n"
            "[global]\n"
            f"repo1-path={self.repo_path}\n"
            f"repo1-retention-full={self.full_retention}\n"
            f"repo1-retention-diff={self.diff_retention}\n"
            "repo1-retention-full-type=count\n"
            # Small files (most of a TimescaleDB cluster's ~1,300) go into bundles: a
            # tenth of the repository's files to write, list and expire.
            "repo1-bundle=y\n"
            f"log-path={self.root / 'log'}\n"
            f"lock-path={self.root / 'lock'}\n"
            f"spool-path={self.root / 'spool'}\n"
            "log-level-console=warn\n"
            "log-level-file=info\n"
            "compress-type=lz4\n"
            f"process-max={self.process_max}\n"
            "start-fast=y\n"
            "\n"
            f"[{STANZA}]\n"
            f"pg1-path={c.data_dir}\n"
            f"pg1-port={c.port}\n"
            f"pg1-socket-path={c.data_dir}\n"
            "pg1-user=postgres\n"
        )
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        self._chown(tmp)
        os.replace(tmp, self.config_path)

    # ------------------------------------------------------------------ commands

    def run(self, *args: str, timeout_s: float = 6 * 3600.0) -> str:
        """Run ``pgbackrest --config=... --stanza=usdcarb ARGS`` and return its stdout."""
        argv = [_executable(), f"--config={self.config_path}", f"--stanza={STANZA}", *args]
        if os.geteuid() == 0:
            argv = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", self.cluster.os_user,
                    "--", *argv]
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PG", "PGBACKREST_"))}
        result = subprocess.run(argv, cwd=self.root, env=env, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=timeout_s)
        if result.returncode != 0:
            raise DevstackError(
                f"expected pgbackrest {' '.join(args)} to succeed, got exit "
                f"{result.returncode}: {(result.stderr or result.stdout).strip()}")
        return result.stdout

    def stanza_create(self) -> None:
        """Create the stanza (idempotent) and check that archiving reaches the repository."""
        self.run("stanza-create")
        self.run("check")

    def check(self) -> None:
        """Switch the WAL segment and wait until it is archived (pgbackrest check)."""
        self.run("check")

    def archive_now(self) -> None:
        """Commit a transaction with an id, then archive the WAL up to it.

        Recovery to a time stops at the first commit after the target: on a cluster that
        was idle since the target there is none, and PostgreSQL refuses to end recovery
        ("recovery ended before configured recovery target was reached"). This commit,
        stamped now, is that boundary for every earlier target.
        """
        self.cluster.psql("SELECT txid_current()")
        self.run("check")

    def backup(self, kind: BackupType = "full") -> BackupInfo:
        """Take a backup (online, fast checkpoint) and expire what retention drops."""
        self.run("backup", f"--type={kind}")
        backups = self.backups()
        if not backups:
            raise DevstackError("expected a backup in the repository after backup, got none")
        return backups[-1]

    def backups(self) -> list[BackupInfo]:
        """Every backup in the repository, oldest first."""
        data: list[dict[str, Any]] = json.loads(self.run("info", "--output=json"))
        out = []
        for stanza in data:
            for b in stanza.get("backup", []):
                out.append(BackupInfo(
                    label=b["label"], type=b["type"], start=float(b["timestamp"]["start"]),
                    stop=float(b["timestamp"]["stop"]), size=int(b["info"]["size"]),
                    repo_size=int(b["info"]["repository"]["delta"]),
                    wal_start=b["archive"]["start"], wal_stop=b["archive"]["stop"]))
        return out

    def restore(self, data_dir: Path, *, target_time: str | None = None,
                immediate: bool = False, backup_set: str | None = None) -> None:
        """Restore into ``data_dir`` (must not exist or be empty), archiving off.

        With ``target_time`` (any PostgreSQL timestamptz literal) recovery replays WAL up
        to that instant and promotes; with ``immediate``, only to the end of the backup
        (its consistent point); otherwise to the end of the archive. Start the
        result with ``PostgresServer(data_dir)``: it recovers, then opens read-write on
        a new timeline that never archives into this stanza.
        """
        data_dir = Path(data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        if any(data_dir.iterdir()):
            raise DevstackError(f"expected an empty directory to restore into, got {data_dir}")
        self._chown(data_dir)
        data_dir.chmod(0o700)
        args = ["restore", f"--pg1-path={data_dir}", "--archive-mode=off"]
        if target_time is not None:
            args += ["--type=time", f"--target={target_time}", "--target-action=promote"]
        elif immediate:
            args += ["--type=immediate", "--target-action=promote"]
        if backup_set is not None:
            args.append(f"--set={backup_set}")
        self.run(*args)

    @staticmethod
    def start_restored(data_dir: Path, port: int | None = None, *, fast: bool = False,
                       timeout_s: float = 300.0) -> PostgresServer:
        """Start a restored data directory on loopback and wait until recovery has
        finished and it was promoted (until then it answers read-only, mid-replay)."""
        server = PostgresServer(data_dir, port, fast=fast, settings={"archive_mode": "off"})
        server.start()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if server.psql("SELECT pg_is_in_recovery()").strip() == "f":
                    break
            except DevstackError:
                if not server.is_running():  # recovery failed: the log says why
                    log = server.log_path.read_text(errors="replace").splitlines()[-8:]
                    raise DevstackError(f"expected {data_dir} to recover, got:\n"
                                        + "\n".join(log)) from None
            if time.monotonic() > deadline:
                server.stop()
                raise DevstackError(f"expected recovery of {data_dir} to finish within "
                                    f"{timeout_s:.0f} s, still in recovery")
            time.sleep(0.1)
        return server

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam(self.cluster.os_user)
            os.chown(path, user.pw_uid, user.pw_gid)
