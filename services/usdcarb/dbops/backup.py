"""Backups of the stack's PostgreSQL with pgBackRest: the scheduling agent and the CLI.

``python -m usdcarb.dbops.backup COMMAND --root .run/stack``:

- ``agent --metrics-port P``: run by the stack. Takes a full backup when none exists
  or the newest is older than ``--full-every-s``, a differential when the newest backup
  of any kind is older than ``--diff-every-s``; serves its Prometheus metrics
  (``usdcarb_backup_last_success_timestamp_seconds`` and friends, WAL archiving from
  ``pg_stat_archiver``) at http://127.0.0.1:P/metrics.
- ``backup [--type full|diff|incr]`` (``make backup``): one backup now (default diff;
  pgBackRest makes it a full when there is none to differ from).
- ``info``: the repository's backups.
- ``restore --target-time T [--into DIR]`` (``make restore TARGET_TIME=...``): restore
  the cluster as of T into a fresh data directory, start it on a free loopback port and
  print how to reach and stop it. ``stop-restored DIR`` stops it.

Runbook: docs/backup-and-restore.md.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from usdcarb.devstack.pgbackrest import BackupInfo, BackupType, PgBackRest
from usdcarb.devstack.ports import DevstackError
from usdcarb.devstack.postgres import PostgresServer
from usdcarb.platform.metrics import MetricsServer

logger = logging.getLogger("usdcarb.dbops.backup")


def _backrest(root: Path) -> PgBackRest:
    primary = PostgresServer(root / "pg")
    if not primary.attach():
        raise DevstackError(f"expected the stack's PostgreSQL running under {root}, got none "
                            "(make up)")
    br = PgBackRest(root / "pgbackrest", primary)
    if not br.config_path.exists():
        raise DevstackError(f"expected {br.config_path} (a stack started with backups), "
                            "got none")
    return br


class Agent(Collector):
    """Take scheduled backups and describe the repository as Prometheus metrics."""

    def __init__(self, backrest: PgBackRest, *, full_every_s: float, diff_every_s: float,
                 check_every_s: float = 15.0) -> None:
        self.backrest = backrest
        self.full_every_s = full_every_s
        self.diff_every_s = diff_every_s
        self.check_every_s = check_every_s
        self.backups: list[BackupInfo] = []
        self.failures = 0
        self.last_failure = 0.0
        self.last_duration = 0.0
        self.archiver: tuple[float, int, int] | None = None  # last ok, archived, failed
        self._lock = threading.Lock()

    def due(self, now: float) -> BackupType | None:
        fulls = [b for b in self.backups if b.type == "full"]
        if not fulls or now - fulls[-1].stop >= self.full_every_s:
            return "full"
        if now - self.backups[-1].stop >= self.diff_every_s:
            return "diff"
        return None

    def refresh(self) -> None:
        backups = self.backrest.backups()
        row = self.backrest.cluster.psql(
            "SELECT coalesce(extract(epoch FROM last_archived_time), 0), archived_count, "
            "failed_count FROM pg_stat_archiver").strip().split("|")
        with self._lock:
            self.backups = backups
            self.archiver = (float(row[0]), int(row[1]), int(row[2]))

    def step(self) -> None:
        """One round: look at the repository, back up if due."""
        self.refresh()
        kind = self.due(time.time())
        if kind is None:
            return
        started = time.monotonic()
        try:
            made = self.backrest.backup(kind)
        except DevstackError as exc:
            with self._lock:
                self.failures += 1
                self.last_failure = time.time()
            logger.error("%s backup failed: %s", kind, exc)
            return
        self.last_duration = time.monotonic() - started
        logger.info("%s backup %s done in %.1f s (%d bytes in the repository)", kind,
                    made.label, self.last_duration, made.repo_size)
        self.refresh()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.step()
            except Exception:
                logger.exception("backup agent round failed")
                with self._lock:
                    self.failures += 1
                    self.last_failure = time.time()
            stop.wait(self.check_every_s)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            backups, archiver = list(self.backups), self.archiver
            failures, last_failure = self.failures, self.last_failure
        if backups:
            yield GaugeMetricFamily(
                "usdcarb_backup_last_success_timestamp_seconds",
                "Unix time the newest pgBackRest backup (any type) completed.",
                value=backups[-1].stop)
            fulls = [b for b in backups if b.type == "full"]
            if fulls:
                yield GaugeMetricFamily(
                    "usdcarb_backup_last_full_success_timestamp_seconds",
                    "Unix time the newest full backup completed.", value=fulls[-1].stop)
            yield GaugeMetricFamily(
                "usdcarb_backup_last_duration_seconds",
                "Wall time of the newest backup.", value=backups[-1].stop - backups[-1].start)
        count = GaugeMetricFamily("usdcarb_backups", "Backups kept in the repository.",
                                  labels=["type"])
        for kind in ("full", "diff", "incr"):
            count.add_metric([kind], sum(1 for b in backups if b.type == kind))
        yield count
        yield GaugeMetricFamily(
            "usdcarb_backup_repository_bytes",
            "Bytes the kept backups take in the repository (compressed).",
            value=sum(b.repo_size for b in backups))
        yield CounterMetricFamily("usdcarb_backup_failures", "Backups the agent saw fail.",
                                  value=failures)
        yield GaugeMetricFamily("usdcarb_backup_last_failure_timestamp_seconds",
                                "Unix time of the last failed backup (0: none).",
                                value=last_failure)
        if archiver is not None:
            yield GaugeMetricFamily(
                "usdcarb_wal_archive_last_success_timestamp_seconds",
                "Unix time PostgreSQL last archived a WAL segment (pg_stat_archiver).",
                value=archiver[0])
            yield CounterMetricFamily("usdcarb_wal_archived_segments",
                                      "WAL segments archived since the cluster started.",
                                      value=archiver[1])
            yield CounterMetricFamily("usdcarb_wal_archive_failures",
                                      "Failed WAL archive attempts since the cluster started.",
                                      value=archiver[2])


def _show(b: BackupInfo) -> str:
    stop = datetime.fromtimestamp(b.stop, UTC).isoformat(timespec="seconds")
    return (f"{b.label}  {b.type:<4}  completed {stop}  database {b.size / 1e6:.1f} MB  "
            f"repository +{b.repo_size / 1e6:.1f} MB  WAL {b.wal_start}..{b.wal_stop}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="usdcarb-backup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command",
                        choices=["agent", "backup", "info", "restore", "stop-restored"])
    parser.add_argument("directory", nargs="?", type=Path,
                        help="stop-restored: the restored data directory")
    parser.add_argument("--root", type=Path, default=Path(".run/stack"))
    parser.add_argument("--type", choices=["full", "diff", "incr"], default="diff")
    parser.add_argument("--target-time", default="",
                        help="restore: a PostgreSQL timestamptz, e.g. '2026-12-05 21:30:00+00'")
    parser.add_argument("--into", type=Path, help="restore: the new data directory")
    parser.add_argument("--metrics-port", type=int, default=0)
    parser.add_argument("--full-every-s", type=float, default=7 * 24 * 3600)
    parser.add_argument("--diff-every-s", type=float, default=24 * 3600)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    root = args.root.resolve()

    if args.command == "stop-restored":
        if args.directory is None:
            parser.error("stop-restored needs the restored data directory")
        restored = PostgresServer(args.directory)
        if not restored.attach():
            raise SystemExit(f"no PostgreSQL runs on {args.directory}")
        restored.stop()
        logger.info("stopped the restored cluster on %s", args.directory)
        return 0
    br = _backrest(root)
    if args.command == "agent":
        agent = Agent(br, full_every_s=args.full_every_s, diff_every_s=args.diff_every_s)
        registry = CollectorRegistry()
        registry.register(agent)
        server = MetricsServer(registry, "127.0.0.1", args.metrics_port)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        logger.info("backup agent on %s: metrics at http://127.0.0.1:%d/metrics", root,
                    server.port)
        try:
            agent.run(stop)
        finally:
            server.stop()
        return 0
    if args.command == "backup":
        started = time.monotonic()
        made = br.backup(args.type)
        logger.info("backup done in %.1f s: %s", time.monotonic() - started, _show(made))
        return 0
    if args.command == "info":
        for b in br.backups():
            logger.info("%s", _show(b))
        return 0
    if not args.target_time:
        parser.error("restore needs --target-time (make restore TARGET_TIME='...')")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    into = (args.into or root / "restores" / stamp).resolve()
    into.parent.mkdir(parents=True, exist_ok=True)
    into.parent.chmod(0o755)
    br.archive_now()  # a commit after T, and the WAL up to it in the archive
    br.restore(into, target_time=args.target_time)
    restored = PgBackRest.start_restored(into)
    logger.info("restored as of %s into %s", args.target_time, into)
    logger.info("  running on %s", restored.dsn("usdcarb"))
    logger.info("  stop it:   .venv/bin/python -m usdcarb.dbops.backup stop-restored %s", into)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
