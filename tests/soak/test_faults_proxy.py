"""The fault proxy does what it says: relays bytes unchanged, adds the latency asked for,
paces to the bandwidth asked for, resets connections on demand or by chance, refuses new
ones; its control API refuses unknown switches; as a process it stops when told."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from usdcarb.devstack import free_port
from usdcarb.soak.faultproxy import FaultProxy, FaultProxyProcess, LegFaults

pytestmark = pytest.mark.integration


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def proxy(echo: int) -> AsyncIterator[FaultProxy]:
    p = FaultProxy(("127.0.0.1", echo), seed=7)
    await p.start()
    yield p
    await p.stop()


async def _round_trip(port: int, payload: bytes) -> tuple[bytes, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        started = time.monotonic()
        writer.write(payload)
        await writer.drain()
        got = await asyncio.wait_for(reader.readexactly(len(payload)), 30)
        return got, time.monotonic() - started
    finally:
        writer.close()


async def test_a_plain_proxy_relays_bytes_unchanged_both_ways(proxy: FaultProxy) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, several chunks
    got, _ = await _round_trip(proxy.port, payload)
    assert got == payload
    assert proxy.stats.bytes_up == proxy.stats.bytes_down == len(payload)


async def test_latency_is_added_each_way_and_order_kept_under_jitter(proxy: FaultProxy) -> None:
    proxy.set_faults(LegFaults(latency_ms=150, jitter_ms=50))
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        started = time.monotonic()
        writer.write(b"x")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(1), 10) == b"x"
        slow = time.monotonic() - started
        # Many small writes with jitter: they arrive in the order they were sent.
        sent = b"".join(b"%04d" % i for i in range(200))
        for i in range(200):
            writer.write(b"%04d" % i)
            await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(len(sent)), 30) == sent
    finally:
        writer.close()
    # 150 ms each way at least (the jitter only adds): the floor the proxy promises.
    assert slow >= 0.3
    assert proxy.stats.delayed_chunks > 0


async def test_bandwidth_limit_paces_a_transfer(proxy: FaultProxy) -> None:
    proxy.set_faults(LegFaults(bandwidth_bps=200_000))
    payload = b"z" * 100_000
    got, took = await _round_trip(proxy.port, payload)
    assert got == payload
    # 100 kB at 200 kB/s: 0.5 s (less the first 20 ms slice) at least; the echo sends each
    # slice back as it comes, so the two directions overlap.
    assert took >= 0.45


async def test_reset_all_drops_open_connections_and_new_ones_still_pass(
        proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"hello")
    await writer.drain()
    assert await reader.readexactly(5) == b"hello"
    assert proxy.reset_all() == 1
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        writer.write(b"more")
        await writer.drain()
        await asyncio.wait_for(reader.readexactly(4), 10)
    writer.close()
    got, _ = await _round_trip(proxy.port, b"again")
    assert got == b"again"


async def test_refuse_and_reset_probability_drop_connections(proxy: FaultProxy) -> None:
    proxy.set_faults(LegFaults(refuse=True))
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await _round_trip(proxy.port, b"no")
    assert proxy.stats.refused == 1
    proxy.set_faults(LegFaults(reset_probability=1.0))
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await _round_trip(proxy.port, b"no")
    proxy.set_faults(LegFaults())
    assert (await _round_trip(proxy.port, b"yes"))[0] == b"yes"


def test_unknown_or_out_of_range_switches_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown"):
        LegFaults.from_json({"latency": 5})
    with pytest.raises(ValueError, match="reset_probability"):
        LegFaults.from_json({"reset_probability": 2})
    with pytest.raises(ValueError, match="expected latency_ms"):
        LegFaults.from_json({"latency_ms": "5"})
    assert LegFaults.from_json({"bandwidth_bps": 1000.0}).bandwidth_bps == 1000


async def test_the_proxy_process_is_driven_by_its_control_api_and_stops(
        echo: int, tmp_path: Path) -> None:
    proc = FaultProxyProcess(listen_port=free_port(), control_port=free_port(),
                             log=tmp_path / "proxy.log")
    await asyncio.to_thread(proc.start)
    try:
        # No upstream yet: connections are refused, then it relays once told where to.
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await _round_trip(proc.listen_port, b"early")
        await asyncio.to_thread(proc.set_upstream, "127.0.0.1", echo)
        await asyncio.to_thread(proc.set_faults, LegFaults(latency_ms=100))
        got, took = await _round_trip(proc.listen_port, b"late")
        assert got == b"late" and took >= 0.2
        with pytest.raises(urllib.error.HTTPError) as refused:
            await asyncio.to_thread(proc.call, "POST", "/faults", {"nope": 1})
        assert refused.value.code == 400 and "unknown" in json.loads(refused.value.read())["error"]
        with pytest.raises(urllib.error.HTTPError):
            await asyncio.to_thread(proc.call, "POST", "/upstream",
                                    {"host": "10.0.0.1", "port": 80})
        stats = await asyncio.to_thread(proc.stats)
        assert stats["refused"] == 1 and stats["bytes_up"] == 4
    finally:
        await asyncio.to_thread(proc.stop)
    assert proc.proc is not None and proc.proc.returncode == 0
