"""A streaming-replication hot standby of a :class:`PostgresServer`, on loopback.

On an empty data directory it copies the primary with ``pg_basebackup`` (WAL streamed
alongside, fast checkpoint), marks it a standby (``standby.signal``) and from then on
starts like any other cluster of the devstack. ``primary_conninfo`` is written at every
start into the generated configuration (not postgresql.auto.conf), so a primary that
comes back on another port is followed.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from usdcarb.devstack.ports import DevstackError
from usdcarb.devstack.postgres import SUPERUSER, PostgresServer, Setting, _clean_env

logger = logging.getLogger(__name__)

__all__ = ["StandbyServer"]

COPY_TIMEOUT_S = 6 * 3600


class StandbyServer(PostgresServer):
    """A read-only replica of ``primary`` (which must be running for the first start)."""

    def __init__(self, data_dir: Path, primary: PostgresServer, port: int | None = None, *,
                 settings: Mapping[str, Setting] | None = None) -> None:
        self.primary = primary
        # A standby never archives (the primary does); it may serve long reads that
        # conflict with replay, and tells the primary about them instead of being cancelled.
        base: dict[str, Setting] = {
            "hot_standby": True,
            "hot_standby_feedback": True,
            "archive_mode": "off",
            "wal_receiver_status_interval": "1s",
        }
        base.update(settings or {})
        super().__init__(data_dir, port, fast=primary.fast, settings=base,
                         bindir=primary.bindir, os_user=primary.os_user)

    def _prepare(self) -> None:
        self.settings["primary_conninfo"] = (
            f"host=127.0.0.1 port={self.primary.port} user={SUPERUSER} "
            "application_name=usdcarb_replica")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not any(self.data_dir.iterdir()):
            if not self.primary.is_running():
                raise DevstackError("expected the primary running to copy it, got it stopped")
            self._check_reachable()
            self._chown(self.data_dir)
            self.data_dir.chmod(0o700)
            argv = [str(self.bindir / "pg_basebackup"), "-h", "127.0.0.1",
                    "-p", str(self.primary.port), "-U", SUPERUSER, "-D", str(self.data_dir),
                    "-X", "stream", "--checkpoint=fast"]
            if self.fast:
                argv.append("--no-sync")
            # A copy takes as long as the cluster is large (~100 MB/s here): no start-up
            # timeout applies.
            result = subprocess.run(self._argv(argv), cwd=self.data_dir, env=_clean_env(),
                                    stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                    timeout=COPY_TIMEOUT_S)
            if result.returncode != 0:
                raise DevstackError(f"expected pg_basebackup to succeed, got exit "
                                    f"{result.returncode}: {result.stderr.strip()}")
            signal_file = self.data_dir / "standby.signal"
            signal_file.touch()
            self._chown(signal_file)
            logger.info("standby copied from port %s into %s", self.primary.port, self.data_dir)
        elif not (self.data_dir / "standby.signal").exists():
            raise DevstackError(f"expected a standby data directory at {self.data_dir} "
                                "(standby.signal), got a primary's")
        super()._prepare()

    def lag_bytes(self) -> int:
        """WAL bytes the standby has received but not yet replayed, plus those it lacks."""
        primary = int(self.primary.psql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").strip())
        replayed = self.psql("SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn").strip()
        return max(0, primary - int(replayed or 0))

    def wait_caught_up(self, timeout_s: float = 30.0) -> None:
        """Block until the standby has replayed the primary's current WAL position."""
        target = int(self.primary.psql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").strip())
        deadline = time.monotonic() + timeout_s
        while True:
            replayed = self.psql("SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn").strip()
            if replayed and int(replayed) >= target:
                return
            if time.monotonic() > deadline:
                raise DevstackError(
                    f"expected the standby at WAL {target} within {timeout_s} s, got {replayed}")
            time.sleep(0.05)
