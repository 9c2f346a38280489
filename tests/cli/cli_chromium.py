"""Open a page in Debian's headless ``chromium`` and inspect it over the DevTools protocol.

``open_page(path)`` starts a fresh chromium (own profile, no network services, no
sandbox as root in CI), loads the file, waits for every plotly chart to be drawn and
returns what the page said on its console, what each chart holds, and a PNG screenshot
with its pixels measured (decoded by the browser itself). The browser is a process this module starts and stops by PID.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars"]

# What each plotly chart holds: its id, its traces' types and point counts.
CHARTS_JS = """
Array.from(document.querySelectorAll('.plotly-graph-div')).map(gd => ({
  id: gd.id,
  drawn: gd.classList.contains('js-plotly-plot') && !!gd.querySelector('.main-svg'),
  traces: (gd._fullData || []).map(t => {
    const col = t.type === 'heatmap' ? t.z : (t.y !== undefined ? t.y : t.x);
    const finite = col ? Array.from(col).flat().filter(v => v !== null &&
                                                       Number.isFinite(Number(v))).length : 0;
    return {type: t.type || 'scatter', name: t.name || '', points: finite};
  })
}))
"""


def chromium_binary() -> str | None:
    """Return the path of Debian's chromium, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageReport:
    """What a loaded page showed."""

    console_errors: list[str] = field(default_factory=list)
    charts: list[dict[str, Any]] = field(default_factory=list)
    screenshot: bytes = b""  # PNG
    pixels: dict[str, Any] = field(default_factory=dict)  # PIXELS_JS of the screenshot
    title: str = ""


# Decode a PNG (data URL) with the browser's own decoder and measure it: how many of
# the pixels are not near-white, and how many distinct colours a sample of them has.
PIXELS_JS = """
(async (src) => {
  const img = new Image(); img.src = src; await img.decode();
  const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let ink = 0; const colours = new Set();
  for (let i = 0; i < d.length; i += 4) {
    if (d[i] < 235 || d[i + 1] < 235 || d[i + 2] < 235) ink++;
    if (i % 400 === 0) colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
  }
  return {width: c.width, height: c.height, ink: ink / (c.width * c.height),
          colours: colours.size};
})(__SRC__)
"""


async def _inspect(ws_url: str, url: str, timeout_s: float) -> PageReport:
    report = PageReport()
    ids = iter(range(1, 1_000_000))
    pending: dict[int, asyncio.Future[Any]] = {}
    loaded = asyncio.Event()
    async with aiohttp.ClientSession() as session, session.ws_connect(
            ws_url, max_msg_size=0) as ws:

        async def reader() -> None:
            async for msg in ws:
                event = json.loads(msg.data)
                if "id" in event and event["id"] in pending:
                    pending.pop(event["id"]).set_result(event)
                method = event.get("method")
                params = event.get("params", {})
                if method == "Page.loadEventFired":
                    loaded.set()
                elif method == "Runtime.exceptionThrown":
                    details = params.get("exceptionDetails", {})
                    report.console_errors.append(
                        details.get("exception", {}).get("description") or details.get("text"))
                elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                    report.console_errors.append(" ".join(
                        str(a.get("value", a.get("description"))) for a in params["args"]))
                elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                    report.console_errors.append(params["entry"]["text"])

        async def call(method: str, **params: Any) -> Any:
            n = next(ids)
            pending[n] = asyncio.get_running_loop().create_future()
            await ws.send_str(json.dumps({"id": n, "method": method, "params": params}))
            reply = await asyncio.wait_for(pending[n], timeout_s)
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            return reply.get("result", {})

        async def evaluate(expression: str) -> Any:
            result = await call("Runtime.evaluate", expression=expression, returnByValue=True)
            return result["result"].get("value")

        task = asyncio.create_task(reader())
        try:
            for domain in ("Runtime", "Log", "Page"):
                await call(f"{domain}.enable")
            await call("Emulation.setDeviceMetricsOverride", width=1280, height=2400,
                       deviceScaleFactor=1, mobile=False)
            await call("Page.navigate", url=url)
            await asyncio.wait_for(loaded.wait(), timeout_s)
            deadline = time.monotonic() + timeout_s
            while True:  # plotly draws after load; wait until every chart has its SVG
                charts = await evaluate(CHARTS_JS)
                if charts and all(c["drawn"] for c in charts):
                    break
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            report.charts = charts or []
            report.title = await evaluate("document.title")
            shot = await call("Page.captureScreenshot", format="png")
            report.screenshot = base64.b64decode(shot["data"])
            result = await call("Runtime.evaluate", awaitPromise=True, returnByValue=True,
                                expression=PIXELS_JS.replace("__SRC__", json.dumps(
                                    "data:image/png;base64," + shot["data"])))
            report.pixels = result["result"].get("value") or {}
        finally:
            task.cancel()
    return report


def open_page(path: Path, *, timeout_s: float = 60.0) -> PageReport:
    """Load ``path`` in a fresh headless chromium and report what it showed."""
    binary = chromium_binary()
    assert binary, "expected Debian's chromium (scripts/setup-system.sh installs it)"
    profile = Path(tempfile.mkdtemp(prefix="usdcarb-chromium-"))
    proc = subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            assert proc.poll() is None, f"chromium exited with {proc.returncode}"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        return asyncio.run(_page(port, path.resolve().as_uri(), timeout_s))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def _page(port: int, url: str, timeout_s: float) -> PageReport:
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + timeout_s
        while True:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json(content_type=None)
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                break
            assert time.monotonic() < deadline, "expected a page target in chromium"
            await asyncio.sleep(0.1)
    return await _inspect(pages[0]["webSocketDebuggerUrl"], url, timeout_s)
