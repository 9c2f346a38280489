"""The stack's dbops hooks on a real cluster: archiving, the backup agent (its metrics),
the replica, the settings the services get, and a clean stop."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbops.dbops_helpers import fast_scratch
from testkit import eventually
from usdcarb.dbops import backup
from usdcarb.devstack import PostgresServer, dbops
from usdcarb.devstack.ports import pid_alive
from usdcarb.devstack.stack import ProcessInfo
from usdcarb.ingestion.main import IngestionSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def root() -> Iterator[Path]:
    path = fast_scratch("usdcarb-dbops-stack-")
    (path / "logs").mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        lines = r.read().decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in lines if line and not line.startswith("#")}


async def test_stack_hooks_start_archiving_agent_and_replica_and_stop_them(root: Path) -> None:
    primary = PostgresServer(root / "pg", fast=True)
    settings = dbops.DbopsSettings(replica_max_lag_s=3.0)
    dbops.prepare_primary(root, primary, settings)
    assert primary.settings["archive_mode"] == "on"
    primary.start()
    started: dict[str, ProcessInfo] = {}
    try:
        primary.create_database("usdcarb")
        extras, env = dbops.start(root, primary, settings, root / "logs")
        started = {name: ProcessInfo(*spec) for name, spec in extras.items()}
        assert set(started) == {"backup", "postgres-replica"}

        # The services read the replica's DSN and lag bound from these variables.
        replica = started["postgres-replica"]
        with pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            ingestion = IngestionSettings()
        assert ingestion.replica_database_url.get_secret_value() == (
            f"postgresql://postgres@127.0.0.1:{replica.port}/usdcarb")
        assert ingestion.replica_max_lag_s == 3.0
        assert set(env) == {f"USDCARB_{s.upper()}_REPLICA_{k}" for s in dbops.READ_SERVICES
                            for k in ("DATABASE_URL", "MAX_LAG_S")}

        # The replica follows the primary.
        primary.psql("CREATE TABLE probe AS SELECT 42 AS answer", database="usdcarb")
        standby = PostgresServer(root / "pg-replica")
        assert standby.attach() and standby.port == replica.port

        def replicated() -> bool:
            return standby.psql("SELECT count(*) FROM pg_class WHERE relname = 'probe'",
                                database="usdcarb").strip() == "1"

        await eventually(replicated, within_s=20)
        assert standby.psql("SELECT answer FROM probe", database="usdcarb").strip() == "42"

        # The agent takes the first full backup by itself and reports it.
        port = started["backup"].extra["metrics_port"]
        seen = await eventually(lambda: metrics(port).get(
            "usdcarb_backup_last_success_timestamp_seconds"), within_s=60)
        assert seen > 0
        m = metrics(port)
        assert m['usdcarb_backups{type="full"}'] == 1
        assert m["usdcarb_wal_archive_last_success_timestamp_seconds"] > 0
        assert m["usdcarb_wal_archive_failures_total"] == 0
        info = json.loads(dbops.backrest(root, primary).run("info", "--output=json"))
        assert info[0]["status"]["message"] == "ok"

        # make restore, on a cluster idle since the target: the restore's own commit is
        # what lets recovery stop at T.
        full = info[0]["backup"][-1]["timestamp"]["stop"]
        await asyncio.sleep(max(0.0, full + 1 - time.time()))
        target = primary.psql("SELECT clock_timestamp()::text").strip()
        await asyncio.sleep(0.2)
        primary.psql("UPDATE probe SET answer = 43", database="usdcarb")
        restored_dir = root / "restored"
        assert backup.main(["restore", "--root", str(root), "--target-time", target,
                            "--into", str(restored_dir)]) == 0
        restored = PostgresServer(restored_dir)
        assert restored.attach()
        try:
            assert restored.psql("SELECT answer FROM probe", database="usdcarb").strip() == "42"
        finally:
            assert backup.main(["stop-restored", str(restored_dir)]) == 0
        assert not restored.is_running()
    finally:
        dbops.stop(root, started)
        primary.stop("immediate")  # a throwaway cluster: no waiting for the archiver
    for info_ in started.values():
        assert not pid_alive(info_.pid)
