"""Pieces the gateway benchmarks share: waiting for processes, stopping them, wrk, CPU time.

Not a benchmark itself (``run.py`` runs ``bench_*.py`` only).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from usdcarb.devstack.ports import poll_http


def wait_http(url: str, timeout: float = 30) -> None:
    """Wait until ``url`` answers 200 (an Envoy admin's /ready)."""
    if not poll_http(url, lambda status, _: status == 200, timeout_s=timeout):
        raise RuntimeError(f"expected {url} to answer within {timeout}s")


def wait_port(port: int, timeout: float = 30) -> None:
    """Wait until something listens on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"expected port {port} to listen within {timeout}s")
        time.sleep(0.1)


def stop(proc: Any) -> None:
    """Terminate a process we started, killing it after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def wrk(url: str, *, seconds: int, connections: int, headers: Mapping[str, str] | None = None,
        script: Path | None = None) -> tuple[float, int]:
    """Run wrk (1 thread, keep-alive) against ``url``; return requests/s and non-2xx count.

    Raise on socket errors: a benchmark whose requests failed measured nothing.
    """
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s"]
    for key, value in (headers or {}).items():
        args += ["-H", f"{key}: {value}"]
    if script is not None:
        args += ["-s", str(script)]
    out = subprocess.run([*args, url], capture_output=True, text=True, timeout=seconds + 30,
                         check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if re.search(r"Socket errors:.*", out):
        raise RuntimeError(f"wrk saw socket errors on {url}:\n{out}")
    return rps, int(bad.group(1)) if bad else 0


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds process ``pid`` used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
