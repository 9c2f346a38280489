"""Operating-system helpers the throwaway servers share: ports, processes, scratch dirs.

Linux only: process state is read from /proc.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import signal
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

logger = logging.getLogger(__name__)
_RNG = random.SystemRandom()  # each process its own draws, whatever seeds tests set

__all__ = [
    "DevstackError",
    "child_pids",
    "free_port",
    "pid_alive",
    "pid_exists",
    "poll_http",
    "process_name",
    "scratch_dir",
    "signal_pid",
    "wait_gone",
]


class DevstackError(RuntimeError):
    """Signal that a local server could not be set up, started or stopped."""


# Ports handed out by this process (never twice: a stack asks for dozens before any binds).
_GIVEN: collections.deque[int] = collections.deque(maxlen=4096)
_LOWEST_PORT = 15000


def _ephemeral_range() -> tuple[int, int] | None:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return None


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    It is drawn below the kernel's ephemeral range (from 15000 up), so the outgoing
    connections of a busy machine, which take ephemeral ports, cannot take it before the
    server binds it; and this process never hands the same port out twice. The port is
    released before returning, so another process may still take it first; the servers
    fail loudly at start in that case rather than talking to a stranger.
    """
    ephemeral = _ephemeral_range()
    if ephemeral is not None and ephemeral[0] - 1 > _LOWEST_PORT:
        for _ in range(200):
            port = _RNG.randint(_LOWEST_PORT, ephemeral[0] - 1)
            if port not in _GIVEN and _bindable(port):
                _GIVEN.append(port)
                return port
    port = 0
    for _ in range(100):  # no room below the ephemeral range: the kernel's pick
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _GIVEN:
            break
    _GIVEN.append(port)
    return port


def poll_http(url: str, accept: Callable[[int, bytes], bool], *, timeout_s: float,
              alive: Callable[[], bool] = lambda: True, interval_s: float = 0.1) -> bool:
    """Poll ``url`` until ``accept(status, body)`` holds.

    Return True when it does; False once ``alive()`` says the server exited or
    ``timeout_s`` passed, so the caller raises its own error with its own log. An HTTP
    error status is an answer too (``accept`` sees it); a refused or timed-out connection
    is not.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        except OSError:
            status, body = 0, b""
        if status and accept(status, body):
            return True
        if not alive() or time.monotonic() > deadline:
            return False
        time.sleep(interval_s)


def scratch_dir(prefix: str = "usdcarb-devstack-") -> Path:
    """Create a fresh directory under the system temp dir that other users can traverse.

    Use it (not pytest's ``tmp_path``, which sits under a 0700 directory) as the parent
    of a PostgreSQL data directory when running as root: the postmaster runs as user
    ``postgres`` and must reach its data directory. The caller removes it.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    return raw[raw.rindex(")") + 2 :].split()


def pid_alive(pid: int) -> bool:
    """Tell whether a process exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def process_name(pid: int) -> str | None:
    """Return the command name (``comm``) of a process, or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return None


def child_pids(pid: int) -> list[int]:
    """Return the live direct children of a process."""
    children: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and fields[1] == str(pid) and fields[0] not in ("Z", "X"):
            children.append(int(entry.name))
    return children


def signal_pid(pid: int, sig: signal.Signals) -> bool:
    """Send a signal to a process; return False when it was already gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def pid_exists(pid: int) -> bool:
    """Tell whether a PID is taken, zombies included (what ``kill(pid, 0)`` sees)."""
    return Path(f"/proc/{pid}").exists()


def wait_gone(pids: Iterable[int], timeout: float, *, reaped: bool = False) -> list[int]:
    """Wait until every process has exited; return the ones still there at the timeout.

    With ``reaped=True`` a zombie still counts as there: its PID is still taken.
    """
    present = pid_exists if reaped else pid_alive
    remaining = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        remaining = [pid for pid in remaining if present(pid)]
        if not remaining or time.monotonic() >= deadline:
            return remaining
        time.sleep(0.02)
