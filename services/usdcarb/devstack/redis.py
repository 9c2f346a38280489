"""A throwaway Redis server run as a child process of this process.

It binds 127.0.0.1 only, keeps its files in ``data_dir`` and persists with an
append-only file fsynced every second, so a SIGKILL loses at most the last second of
writes that had not yet reached the kernel (writes that were acknowledged have).
"""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from usdcarb.devstack.ports import (
    DevstackError,
    child_pids,
    free_port,
    process_name,
    signal_pid,
    wait_gone,
)

logger = logging.getLogger(__name__)

__all__ = ["RedisServer"]

CONF_NAME = "redis.conf"
LOG_NAME = "redis.log"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


def _conf_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ping(port: int) -> bytes:
    """Send PING over RESP and return the raw first reply line (b"" on no answer)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(256).split(b"\r\n", 1)[0]
    except OSError:
        return b""


class RedisServer:
    """Run a local redis-server with AOF persistence as a child of this process."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        executable: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port if port is not None else free_port()
        self.executable = executable or shutil.which("redis-server") or "/usr/bin/redis-server"
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"RedisServer(data_dir={str(self.data_dir)!r}, port={self.port}, pid={self.pid})"

    @property
    def url(self) -> str:
        """Return the redis:// URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """Return the PID of the running server, or None."""
        return self._proc.pid if self.is_running() and self._proc is not None else None

    @property
    def log_path(self) -> Path:
        """Return the server log file."""
        return self.data_dir / LOG_NAME

    def is_running(self) -> bool:
        """Tell whether the server process this object started is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Write the configuration, start redis-server and wait until PING answers."""
        if self.is_running():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / CONF_NAME
        conf.write_text(
            "# Written by usdcarb.devstack at every start: edits here are overwritten.\n"
            "bind 127.0.0.1\n"
            "protected-mode yes\n"
            f"port {self.port}\n"
            f"dir {_conf_quote(str(self.data_dir))}\n"
            f"logfile {_conf_quote(str(self.log_path))}\n"
            "daemonize no\n"
            "appendonly yes\n"
            "appendfsync everysec\n"
            # The AOF is the durable copy; no background RDB forks (SAVE still works).
            'save ""\n'
        )
        # Anything redis prints before it opens its logfile lands in the same file.
        with self.log_path.open("ab") as early_log:
            self._proc = subprocess.Popen(
                [self.executable, str(conf)],
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=early_log,
                stderr=early_log,
                start_new_session=True,  # survives the shell that ran `make up`
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise DevstackError(
                    f"expected redis-server to start, got exit {code}:\n{self._log_tail()}"
                )
            # "-LOADING" while it replays the AOF: keep waiting.
            if _ping(self.port) == b"+PONG":
                break
            if time.monotonic() >= deadline:
                self.kill()
                raise DevstackError(
                    f"expected redis-server to answer PING within {START_TIMEOUT_S:.0f} s, got "
                    f"no answer\n{self._log_tail()}"
                )
            time.sleep(0.02)
        logger.info(
            "redis started pid=%s port=%s data_dir=%s", self._proc.pid, self.port, self.data_dir
        )

    def stop(self) -> None:
        """Send SIGTERM (Redis flushes the AOF and exits) and wait for the process."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired as exc:
                raise DevstackError(
                    f"expected redis-server {proc.pid} to exit within {STOP_TIMEOUT_S:.0f} s "
                    "of SIGTERM, still alive"
                ) from exc
        self._proc = None
        logger.info("redis stopped pid=%s", proc.pid)

    def kill(self) -> None:
        """Send SIGKILL, as a crash would, and reap the process and any fork children."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise DevstackError("expected a running redis-server started by this object, got none")
        # An AOF rewrite child would otherwise outlive its parent.
        children = child_pids(proc.pid)
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)
        for child in children:
            if (process_name(child) or "").startswith("redis"):
                signal_pid(child, signal.SIGKILL)
        wait_gone(children, timeout=5)
        self._proc = None
        logger.info("redis killed pid=%s", proc.pid)

    def restart(self) -> None:
        """Stop the server if it runs, then start it on the same port."""
        self.stop()
        self.start()

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
            logger.exception("redis did not stop cleanly; killing")
            self.kill()

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
