"""A throwaway PostgreSQL 15 + TimescaleDB cluster run by this process.

The cluster lives in ``data_dir`` (created with initdb on first start), listens on
127.0.0.1 only and keeps its unix socket in the data directory, so it never clashes with
a system cluster. When this process runs as root the postgres binaries run as the OS
user ``postgres`` (through ``runuser``), which then must be able to reach ``data_dir``:
use :func:`usdcarb.devstack.scratch_dir` rather than pytest's 0700 ``tmp_path``.

Ownership: :meth:`PostgresServer.stop` and :meth:`PostgresServer.kill` only act on the
postmaster this object started (or explicitly adopted with :meth:`attach`), identified by
its PID and cross-checked against ``postmaster.pid``. A postmaster started by someone else
on the same data directory is never signalled: ``start`` refuses to run next to it.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal, Self
from urllib.parse import quote

from usdcarb.devstack.ports import (
    DevstackError,
    child_pids,
    free_port,
    pid_alive,
    process_name,
    signal_pid,
    wait_gone,
)

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_BINDIR", "PostgresServer"]

DEFAULT_BINDIR = Path("/usr/lib/postgresql/15/bin")
CONF_NAME = "usdcarb.conf"
LOG_NAME = "postgres.log"
SUPERUSER = "postgres"
START_TIMEOUT_S = 60
# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107

StopMode = Literal["smart", "fast", "immediate"]
Setting = str | int | float | bool


def _clean_env() -> dict[str, str]:
    # PG* variables of the caller (PGPORT, PGHOST, PGDATA...) must not redirect our tools.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _conf_value(value: Setting) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def _lock_pid(path: Path) -> int | None:
    """Return the PID on the first line of a postgres lock file, or None."""
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except (FileNotFoundError, PermissionError):
        return None
    return int(first) if first.isdigit() else None


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class PostgresServer:
    """Run a local PostgreSQL cluster with TimescaleDB preloaded as a child of this process.

    ``fast=True`` turns ``fsync`` and ``full_page_writes`` off: right for tests, wrong
    for anything that must survive an OS crash. ``settings`` adds or overrides
    postgresql.conf parameters.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        fast: bool = False,
        settings: Mapping[str, Setting] | None = None,
        bindir: Path = DEFAULT_BINDIR,
        os_user: str = "postgres",
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port if port is not None else free_port()
        self.fast = fast
        self.settings = dict(settings or {})
        self.bindir = bindir
        self.os_user = os_user
        self._pid: int | None = None
        socket_path = f"{self.data_dir}/.s.PGSQL.{self.port}"
        if len(socket_path) > MAX_SOCKET_PATH:
            raise DevstackError(
                f"expected a unix socket path of at most {MAX_SOCKET_PATH} bytes, "
                f"got {len(socket_path)} ({socket_path}); use a shorter data_dir"
            )

    def __repr__(self) -> str:
        return f"PostgresServer(data_dir={str(self.data_dir)!r}, port={self.port}, pid={self._pid})"

    # ------------------------------------------------------------------ lifecycle

    @property
    def pid(self) -> int | None:
        """Return the PID of the postmaster this object started, if it is running."""
        return self._pid if self.is_running() else None

    @property
    def log_path(self) -> Path:
        """Return the server log file (pg_ctl -l)."""
        return self.data_dir / LOG_NAME

    def is_running(self) -> bool:
        """Tell whether the postmaster this object started is alive."""
        return self._pid is not None and pid_alive(self._pid)

    def start(self) -> None:
        """Initialise the cluster if needed, write its configuration and start it.

        Block until it accepts connections. Refuse to start when another postmaster
        already runs on the data directory.
        """
        if self.is_running():
            logger.debug("postgres already running pid=%s port=%s", self._pid, self.port)
            return
        foreign = self._pidfile_pid()
        if foreign is not None and self._is_postmaster(foreign):
            raise DevstackError(
                f"expected no postmaster on {self.data_dir}, got pid {foreign} "
                "(started elsewhere; use attach() to adopt it)"
            )
        self._prepare()
        result = self._run([*self._pg_ctl("start"), "-l", str(self.log_path)], check=False)
        pid = self._pidfile_pid()
        if result.returncode != 0 or pid is None:
            if pid is not None and self._is_postmaster(pid):
                # A postmaster that did not become ready in time is still ours to end.
                self._kill_tree(pid)
            raise DevstackError(
                f"expected pg_ctl start to succeed, got exit {result.returncode}: "
                f"{result.stdout.strip()}\n{_tail(self.log_path)}"
            )
        self._pid = pid
        logger.info("postgres started pid=%s port=%s data_dir=%s", pid, self.port, self.data_dir)

    def stop(self, mode: StopMode = "fast") -> None:
        """Shut down the postmaster this object started and wait until it has exited."""
        pid = self._owned_pid()
        if pid is None:
            return
        result = self._run([*self._pg_ctl("stop"), "-m", mode], check=False)
        if result.returncode != 0:
            raise DevstackError(
                f"expected pg_ctl stop -m {mode} to succeed, got exit {result.returncode}: "
                f"{result.stdout.strip()}"
            )
        # postmaster.pid disappears a moment before the process itself does.
        if wait_gone([pid], timeout=10):
            raise DevstackError(f"expected postmaster {pid} to exit after stop, still alive")
        self._pid = None
        logger.info("postgres stopped pid=%s mode=%s", pid, mode)

    def kill(self) -> None:
        """Send SIGKILL to the postmaster, as a crash would, and wait for its children.

        The children notice the postmaster's death and exit by themselves; any that
        linger past a few seconds are killed too so the next start finds no shared
        memory still attached. The next ``start`` runs crash recovery.
        """
        pid = self._owned_pid()
        if pid is None:
            raise DevstackError("expected a running postmaster started by this object, got none")
        self._kill_tree(pid)
        self._pid = None
        logger.info("postgres killed pid=%s", pid)

    def restart(self) -> None:
        """Stop the server if it runs (fast mode), then start it on the same port."""
        if self.is_running():
            self.stop()
        self.start()

    def attach(self) -> bool:
        """Adopt a postmaster already running on the data directory; return whether one was.

        After adopting, ``stop`` and ``kill`` act on it: use this to end a stack that an
        earlier process started (``make down``).
        """
        pid = self._pidfile_pid()
        if pid is None or not self._is_postmaster(pid):
            return False
        lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        self.port = int(lines[3])
        self._pid = pid
        return True

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        except DevstackError:
            logger.exception("postgres did not stop cleanly; killing pid=%s", self._pid)
            if self.is_running():
                self.kill()

    # ------------------------------------------------------------------ clients

    def dsn(self, database: str = "postgres") -> str:
        """Return a libpq/asyncpg URL for the superuser over TCP."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{quote(database, safe='')}"

    def psql(
        self,
        sql: str,
        database: str = "postgres",
        variables: Mapping[str, str] | None = None,
    ) -> str:
        """Run SQL through psql (stop at the first error) and return its unaligned output.

        Pass values as ``variables`` and reference them as ``:'name'`` in the SQL so
        psql quotes them.
        """
        argv = [str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        argv += ["-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", database]
        for name, value in (variables or {}).items():
            argv += ["-v", f"{name}={value}"]
        result = subprocess.run(
            argv, input=sql, capture_output=True, text=True, env=_clean_env(), timeout=120
        )
        if result.returncode != 0:
            raise DevstackError(f"expected psql to succeed, got: {result.stderr.strip()}")
        return result.stdout

    def create_database(self, name: str) -> None:
        """Create a database unless it already exists."""
        self.psql(
            "SELECT format('CREATE DATABASE %I', :'dbname') "
            "WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'dbname') \\gexec\n",
            variables={"dbname": name},
        )

    # ------------------------------------------------------------------ internals

    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _argv(self, argv: Sequence[str]) -> list[str]:
        if not self._as_root():
            return list(argv)
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        return [runuser, "-u", self.os_user, "--", *argv]

    def _run(self, argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        # cwd in the data dir: the postgres user may not be allowed into the caller's cwd.
        result = subprocess.run(
            self._argv(argv),
            cwd=self.data_dir,
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=START_TIMEOUT_S + 30,
        )
        if check and result.returncode != 0:
            raise DevstackError(
                f"expected {Path(argv[0]).name} to succeed, got exit {result.returncode}: "
                f"{result.stdout.strip()}"
            )
        return result

    def _pg_ctl(self, action: str) -> list[str]:
        pg_ctl = str(self.bindir / "pg_ctl")
        return [pg_ctl, action, "-D", str(self.data_dir), "-w", "-t", str(START_TIMEOUT_S), "-s"]

    def _chown(self, path: Path) -> None:
        if self._as_root():
            user = pwd.getpwnam(self.os_user)
            os.chown(path, user.pw_uid, user.pw_gid)

    def _check_reachable(self) -> None:
        """Fail early, with a hint, when the postgres OS user cannot reach data_dir."""
        if not self._as_root():
            return
        user = pwd.getpwnam(self.os_user)
        gids = set(os.getgrouplist(self.os_user, user.pw_gid))
        for parent in self.data_dir.parents:
            st = parent.stat()
            if st.st_uid == user.pw_uid:
                ok = bool(st.st_mode & stat.S_IXUSR)
            elif st.st_gid in gids:
                ok = bool(st.st_mode & stat.S_IXGRP)
            else:
                ok = bool(st.st_mode & stat.S_IXOTH)
            if not ok:
                raise DevstackError(
                    f"expected every parent of {self.data_dir} to be traversable by OS user "
                    f"{self.os_user!r}, got {parent} with mode {stat.filemode(st.st_mode)}; "
                    "use usdcarb.devstack.scratch_dir()"
                )

    def _prepare(self) -> None:
        """Run initdb on an empty data dir and (re)write the generated configuration."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not any(self.data_dir.iterdir()):
            self._check_reachable()
            self._chown(self.data_dir)
            self.data_dir.chmod(0o700)
            initdb = [str(self.bindir / "initdb"), "-D", str(self.data_dir), "-A", "trust"]
            initdb += ["-U", SUPERUSER, "--encoding", "UTF8", "--no-locale", "--no-instructions"]
            if self.fast:
                initdb.append("--no-sync")
            self._run(initdb)
            logger.info("postgres initdb done data_dir=%s", self.data_dir)
        elif not (self.data_dir / "PG_VERSION").exists():
            raise DevstackError(
                f"expected an empty directory or a PostgreSQL data directory at "
                f"{self.data_dir}, got other files"
            )
        self._write_config()

    def _write_config(self) -> None:
        settings: dict[str, Setting] = {
            "listen_addresses": "127.0.0.1",
            "port": self.port,
            "unix_socket_directories": str(self.data_dir),
            "max_connections": 200,
            "shared_preload_libraries": "timescaledb",
            "timescaledb.telemetry_level": "off",
            "fsync": not self.fast,
            "full_page_writes": not self.fast,
            "synchronous_commit": True,
        }
        settings.update(self.settings)
        conf = self.data_dir / CONF_NAME
        conf.write_text(
            "# Written by usdcarb.devstack at every start: edits here are overwritten.\n"
            + "".join(f"{key} = {_conf_value(value)}\n" for key, value in settings.items())
        )
        self._chown(conf)
        main_conf = self.data_dir / "postgresql.conf"
        include = f"include_if_exists = '{CONF_NAME}'"
        if include not in main_conf.read_text():
            with main_conf.open("a") as fh:
                fh.write(f"\n{include}\n")

    def _pidfile_pid(self) -> int | None:
        return _lock_pid(self.data_dir / "postmaster.pid")

    def _socket_lock(self) -> Path:
        return self.data_dir / f".s.PGSQL.{self.port}.lock"

    def _is_postmaster(self, pid: int) -> bool:
        return pid_alive(pid) and process_name(pid) in ("postgres", "postmaster")

    def _owned_pid(self) -> int | None:
        """Return our postmaster PID if it still runs and still owns the data dir."""
        pid = self._pid
        if pid is None:
            return None
        if not pid_alive(pid):
            self._pid = None
            return None
        if self._pidfile_pid() != pid or not self._is_postmaster(pid):
            logger.warning("postmaster.pid no longer names pid=%s; leaving it alone", pid)
            self._pid = None
            return None
        return pid

    def _kill_tree(self, pid: int) -> None:
        children = child_pids(pid)
        signal_pid(pid, signal.SIGKILL)
        if wait_gone([pid], timeout=5):
            raise DevstackError(f"expected postmaster {pid} to die on SIGKILL, still alive")
        # pg_ctl leaves the postmaster orphaned, so PID 1 reaps it; until then the zombie's
        # PID makes the next postmaster take the lock files for a live one's. Some
        # container inits reap late: then remove the lock files of the postmaster we know
        # is dead, as postgres itself would once the PID is gone.
        if wait_gone([pid], timeout=0.5, reaped=True):
            for lock in (self.data_dir / "postmaster.pid", self._socket_lock()):
                if _lock_pid(lock) == pid:
                    logger.info("postmaster %s not reaped yet; removing %s", pid, lock.name)
                    lock.unlink()
        lingering = wait_gone(children, timeout=10)
        for child in lingering:
            if process_name(child) in ("postgres", "postmaster"):
                signal_pid(child, signal.SIGKILL)
        if wait_gone(lingering, timeout=5):
            raise DevstackError(f"expected children of postmaster {pid} to exit, got {lingering}")
