"""A TCP fault proxy of our own: a slow, lossy network leg between two processes.

``python -m usdcarb.soak.faultproxy --listen-port P --control-port C [--upstream H:P]``
forwards every connection accepted on 127.0.0.1:P to the upstream, and applies the
switches set through its control API (HTTP on 127.0.0.1:C, loopback only):

* ``GET  /faults``   the switches; ``POST /faults`` replaces them (JSON, see ``LegFaults``;
  unknown names are refused with 400)
* ``POST /upstream`` ``{"host": "127.0.0.1", "port": N}`` where new connections go
* ``POST /reset``    reset (TCP RST) every open connection now; answers how many
* ``GET  /stats``    connections, bytes each way, resets, delayed chunks

Faults, per direction of every connection: ``latency_ms`` + a uniform ``jitter_ms`` on
every chunk (chunks keep their order: a chunk never overtakes the one before it, as on one
TCP stream), ``bandwidth_bps`` (bytes per second, 0 = unlimited), ``reset_probability``
(each forwarded chunk may instead reset the connection, drawn from the proxy's seeded
generator) and ``refuse`` (new connections are reset at once). Everything binds
127.0.0.1; every wait is bounded by the connection's own life.

The kernel here has no netem (see the shared fault notes), so delay must come from a
proxy; ``FaultProxy`` is the same proxy inside the caller's event loop (tests), and
``FaultProxyProcess`` runs it as its own process (the soak), so a busy load driver cannot
distort the leg it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from usdcarb.devstack.ports import poll_http

logger = logging.getLogger(__name__)

__all__ = ["FaultProxy", "FaultProxyProcess", "LegFaults", "ProxyStats"]

CHUNK = 65536
QUEUE_CHUNKS = 64  # chunks in flight per direction: back-pressure beyond it
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class LegFaults:
    """What the leg does to the traffic; all off by default (a plain relay)."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    bandwidth_bps: int = 0
    reset_probability: float = 0.0
    refuse: bool = False

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or self.jitter_ms < 0:
            raise ValueError(f"expected latency_ms, jitter_ms >= 0, got {self.latency_ms}, "
                             f"{self.jitter_ms}")
        if self.bandwidth_bps < 0:
            raise ValueError(f"expected bandwidth_bps >= 0, got {self.bandwidth_bps}")
        if not 0.0 <= self.reset_probability <= 1.0:
            raise ValueError(f"expected reset_probability in [0, 1], got {self.reset_probability}")

    @classmethod
    def from_json(cls, data: Any) -> LegFaults:
        """Build from a JSON object; unknown names and wrong types are errors."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        known = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"expected fields among {sorted(known)}, got unknown {unknown}")
        for name, value in data.items():
            ok = (isinstance(value, bool) if name == "refuse" else
                  isinstance(value, int | float) and not isinstance(value, bool))
            if not ok:
                raise ValueError(f"expected {name} to be a {known[name]}, got {value!r}")
        if "bandwidth_bps" in data and not float(data["bandwidth_bps"]).is_integer():
            raise ValueError(f"expected bandwidth_bps to be whole bytes, got {data['bandwidth_bps']}")
        values = dict(data)
        if "bandwidth_bps" in values:
            values["bandwidth_bps"] = int(values["bandwidth_bps"])
        return cls(**values)


@dataclass
class ProxyStats:
    """Counters of one proxy since it started."""

    connections: int = 0
    open: int = 0
    refused: int = 0
    resets: int = 0
    bytes_up: int = 0  # client → upstream
    bytes_down: int = 0  # upstream → client
    delayed_chunks: int = 0
    upstream_failures: int = 0


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a dropped connection looks to both ends."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(eq=False)  # hashed by identity: kept in a set
class _Conn:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    reset: bool = False

    def abort(self) -> None:
        self.reset = True
        _rst(self.client)
        if self.upstream is not None:
            _rst(self.upstream)
        for task in self.tasks:
            task.cancel()


class FaultProxy:
    """The proxy inside the running event loop: ``await start()``, ``await stop()``."""

    def __init__(self, upstream: tuple[str, int] | None = None, *, port: int = 0,
                 seed: int = 0) -> None:
        self.upstream = upstream
        self.faults = LegFaults()
        self.stats = ProxyStats()
        self._port = port
        self._rng = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()

    @property
    def port(self) -> int:
        """Return the port it listens on (after ``start``)."""
        if self._server is None:
            raise RuntimeError("expected a started proxy, got none")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def set_faults(self, faults: LegFaults) -> LegFaults:
        """Apply ``faults`` to open connections and new ones alike."""
        self.faults = faults
        return faults

    def reset_all(self) -> int:
        """Reset every open connection now; return how many there were."""
        conns = list(self._conns)
        for conn in conns:
            conn.abort()
        self.stats.resets += len(conns)
        return len(conns)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._port)

    async def stop(self) -> None:
        """Stop accepting and reset what is still open."""
        if self._server is not None:
            self._server.close()
            for conn in list(self._conns):
                conn.abort()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        conn = _Conn(writer)
        if self.faults.refuse or self.upstream is None:
            self.stats.refused += 1
            conn.abort()
            return
        try:
            async with asyncio.timeout(5):
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except (OSError, TimeoutError):
            self.stats.upstream_failures += 1
            conn.abort()
            return
        conn.upstream = up_writer
        self._conns.add(conn)
        self.stats.open += 1
        try:
            conn.tasks = [asyncio.create_task(self._direction(conn, reader, up_writer, True)),
                          asyncio.create_task(self._direction(conn, up_reader, writer, False))]
            await asyncio.gather(*conn.tasks, return_exceptions=True)
        finally:
            self._conns.discard(conn)
            self.stats.open -= 1
            for w in (writer, up_writer):
                if not w.is_closing():
                    w.close()

    async def _direction(self, conn: _Conn, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter, up: bool) -> None:
        """Relay one direction: a reader task queues chunks with their due time, this
        task sends each when due (never before the previous one), paced to the bandwidth."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)

        async def read() -> None:
            last_due = 0.0
            while True:
                try:
                    chunk = await reader.read(CHUNK)
                except OSError:
                    chunk = b""
                f = self.faults
                delay = (f.latency_ms + (self._rng.uniform(0, f.jitter_ms) if f.jitter_ms
                                         else 0.0)) / 1000
                due = max(last_due, time.monotonic() + delay)
                last_due = due
                await queue.put((due, chunk))
                if not chunk:
                    return

        reading = asyncio.create_task(read())
        next_free = 0.0
        try:
            while True:
                due, chunk = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    self.stats.delayed_chunks += 1
                    await asyncio.sleep(wait)
                if not chunk:  # EOF: pass the half-close on
                    with contextlib.suppress(OSError, RuntimeError):
                        if writer.can_write_eof():
                            writer.write_eof()
                    return
                f = self.faults
                if f.reset_probability and self._rng.random() < f.reset_probability:
                    self.stats.resets += 1
                    conn.abort()
                    return
                # Under a bandwidth limit, slices of ~20 ms each leave no earlier than the
                # rate allows (bytes sent by time t <= bandwidth * t).
                step = max(1, min(CHUNK, f.bandwidth_bps // 50)) if f.bandwidth_bps else CHUNK
                for i in range(0, len(chunk), step):
                    piece = chunk[i:i + step]
                    if f.bandwidth_bps:
                        now = time.monotonic()
                        if next_free > now:
                            await asyncio.sleep(next_free - now)
                        next_free = max(now, next_free) + len(piece) / f.bandwidth_bps
                    writer.write(piece)
                    try:
                        await writer.drain()
                    except (OSError, RuntimeError):
                        conn.abort()
                        return
                if up:
                    self.stats.bytes_up += len(chunk)
                else:
                    self.stats.bytes_down += len(chunk)
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading


# ------------------------------------------------------------------ control API
def control_app(proxy: FaultProxy) -> web.Application:
    """The control API of ``proxy`` (see the module docstring)."""
    async def get_faults(_: web.Request) -> web.Response:
        return web.json_response(dataclasses.asdict(proxy.faults))

    async def post_faults(request: web.Request) -> web.Response:
        try:
            faults = LegFaults.from_json(await request.json())
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(dataclasses.asdict(proxy.set_faults(faults)))

    async def post_upstream(request: web.Request) -> web.Response:
        body = await request.json()
        if (not isinstance(body, dict) or set(body) != {"host", "port"}
                or body["host"] not in ("127.0.0.1", "localhost", "::1")
                or not isinstance(body["port"], int) or not 0 < body["port"] < 65536):
            return web.json_response(
                {"error": f"expected {{'host': loopback, 'port': 1-65535}}, got {body!r}"},
                status=400)
        proxy.upstream = (body["host"], body["port"])
        return web.json_response({"host": body["host"], "port": body["port"]})

    async def post_reset(_: web.Request) -> web.Response:
        return web.json_response({"reset": proxy.reset_all()})

    async def get_stats(_: web.Request) -> web.Response:
        return web.json_response({**dataclasses.asdict(proxy.stats), "port": proxy.port,
                                  "upstream": list(proxy.upstream or ())})

    app = web.Application()
    app.add_routes([web.get("/faults", get_faults), web.post("/faults", post_faults),
                    web.post("/upstream", post_upstream), web.post("/reset", post_reset),
                    web.get("/stats", get_stats)])
    return app


async def serve(proxy: FaultProxy, control_port: int) -> None:
    """Run ``proxy`` and its control API until SIGTERM/SIGINT."""
    await proxy.start()
    runner = web.AppRunner(control_app(proxy), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", control_port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logger.info("fault proxy on 127.0.0.1:%d → %s, control :%d", proxy.port, proxy.upstream,
                control_port)
    await stop.wait()
    await runner.cleanup()
    await proxy.stop()


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if host not in ("127.0.0.1", "localhost") or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected 127.0.0.1:PORT, got {value!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="usdcarb-faultproxy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--upstream", type=_address, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    asyncio.run(serve(FaultProxy(args.upstream, port=args.listen_port, seed=args.seed),
                      args.control_port))
    return 0


# ------------------------------------------------------------------ as a process
class FaultProxyProcess:
    """The proxy as a child process of the caller, driven through its control API."""

    def __init__(self, *, listen_port: int, control_port: int, log: Path, seed: int = 0,
                 upstream: tuple[str, int] | None = None) -> None:
        self.listen_port = listen_port
        self.control_port = control_port
        self.log = log
        self.seed = seed
        self.upstream = upstream
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def url(self) -> str:
        """Return the control API's base URL."""
        return f"http://127.0.0.1:{self.control_port}"

    def start(self, env: dict[str, str] | None = None) -> None:
        """Start it and wait until its control API answers."""
        args = [sys.executable, "-m", "usdcarb.soak.faultproxy",
                "--listen-port", str(self.listen_port), "--control-port", str(self.control_port),
                "--seed", str(self.seed)]
        if self.upstream is not None:
            args += ["--upstream", f"{self.upstream[0]}:{self.upstream[1]}"]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True)
        proc = self.proc
        if not poll_http(self.url + "/stats", lambda status, _: status == 200,
                         timeout_s=START_TIMEOUT_S, alive=lambda: proc.poll() is None,
                         interval_s=0.05):
            self.stop()
            raise RuntimeError(f"expected the fault proxy up, got exit {proc.poll()}: "
                               f"{self.log.read_text(errors='replace')[-2000:]}")

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """Call the control API and return its JSON answer (raise on an error status)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as reply:
            return json.loads(reply.read())

    def set_upstream(self, host: str, port: int) -> None:
        self.call("POST", "/upstream", {"host": host, "port": port})

    def set_faults(self, faults: LegFaults) -> dict[str, Any]:
        answer: dict[str, Any] = self.call("POST", "/faults", dataclasses.asdict(faults))
        return answer

    def reset_all(self) -> int:
        return int(self.call("POST", "/reset", {})["reset"])

    def stats(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.call("GET", "/stats")
        return answer

    def stop(self) -> None:
        """SIGTERM the process this object started (SIGKILL after 10 s); idempotent."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


if __name__ == "__main__":
    raise SystemExit(main())
