"""The steady read load, from load tools made for it: ghz (gRPC) and vegeta (HTTP).

Both run as child processes for the whole load phase at a fixed rate through the
gateway and write every request (time, latency, status) to a file; ``collect`` turns
those into the run's attempts so the report places each in or out of a fault window.
They do not retry: a read that failed is one failed attempt, counted as such.
Installed by ``make soak-tools`` into .tools/bin (pinned versions in the Makefile).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import signal
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from usdcarb.soak.load import CallRecord, Recorder, is_retryable_code

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
TOOLS = REPO / ".tools" / "bin"
DESCRIPTOR = REPO / "gen" / "descriptor" / "usdcarb.binpb"
GHZ_CALL = "usdcarb.v1.StrategyService.ListStrategyKinds"
VEGETA_PATH = "/v1/strategies?pageSize=10"


def binary(name: str) -> Path | None:
    """Return the tool from .tools/bin (or PATH), or None when it is not installed."""
    local = TOOLS / name
    if local.exists():
        return local
    found = shutil.which(name)
    return Path(found) if found else None


@dataclass
class ToolRun:
    name: str
    proc: asyncio.subprocess.Process
    output: Path
    log: Path


async def start_ghz(out_dir: Path, target: str, ca: str, token: str, seconds: float,
                    rps: int) -> ToolRun | None:
    ghz = binary("ghz")
    if ghz is None:
        logger.warning("ghz not installed (make soak-tools): no gRPC load-tool traffic")
        return None
    output, log = out_dir / "ghz.json", out_dir / "ghz.log"
    args = [str(ghz), "--protoset", str(DESCRIPTOR), "--call", GHZ_CALL, "-d", "{}",
            "-m", json.dumps({"authorization": f"Bearer {token}"}),
            "--rps", str(rps), "-z", f"{int(seconds)}s", "-c", "4", "--connections", "2",
            "--timeout", "10s", "-O", "json", "-o", str(output)]
    args += ["--cacert", ca, "--cname", "localhost"] if ca else ["--insecure"]
    return await _spawn("ghz", [*args, target], output, log)


async def start_vegeta(out_dir: Path, gateway: str, ca: str, token: str, seconds: float,
                       rps: int) -> ToolRun | None:
    vegeta = binary("vegeta")
    if vegeta is None:
        logger.warning("vegeta not installed (make soak-tools): no HTTP load-tool traffic")
        return None
    targets = out_dir / "vegeta-targets.txt"
    targets.write_text(f"GET {gateway}{VEGETA_PATH}\nAuthorization: Bearer {token}\n")
    targets.chmod(0o600)  # a bearer token
    output, log = out_dir / "vegeta.bin", out_dir / "vegeta.log"
    args = [str(vegeta), "attack", f"-targets={targets}", f"-rate={rps}/s",
            f"-duration={int(seconds)}s", "-timeout=10s", "-max-workers=16",
            f"-output={output}"]
    if ca:
        args.append(f"-root-certs={ca}")
    return await _spawn("vegeta", args, output, log)


async def _spawn(name: str, args: list[str], output: Path, log: Path) -> ToolRun:
    with log.open("ab") as sink:
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=sink, stderr=sink,
            start_new_session=True)
    return ToolRun(name, proc, output, log)


async def finish(run: ToolRun, grace_s: float) -> None:
    """Wait for the tool to end on its own (its duration), else stop it by its PID."""
    try:
        await asyncio.wait_for(run.proc.wait(), grace_s)
    except TimeoutError:
        logger.warning("%s still running %.0fs after its duration: SIGTERM", run.name, grace_s)
        os.kill(run.proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(run.proc.wait(), 10)
        except TimeoutError:
            os.kill(run.proc.pid, signal.SIGKILL)
            await run.proc.wait()


_FRACTION = re.compile(r"(\.\d{6})\d+")


def _time(value: str) -> float:
    """RFC 3339 with nanoseconds (Go) to epoch seconds."""
    value = _FRACTION.sub(r"\1", value.replace("Z", "+00:00"))
    return datetime.fromisoformat(value).timestamp()


GRPC_STATUS_NAMES = {
    "OK": "OK", "Unavailable": "UNAVAILABLE", "ResourceExhausted": "RESOURCE_EXHAUSTED",
    "DeadlineExceeded": "DEADLINE_EXCEEDED", "Unauthenticated": "UNAUTHENTICATED",
    "PermissionDenied": "PERMISSION_DENIED", "Internal": "INTERNAL", "Unknown": "UNKNOWN",
    "Canceled": "CANCELLED", "NotFound": "NOT_FOUND", "InvalidArgument": "INVALID_ARGUMENT",
    "Unimplemented": "UNIMPLEMENTED", "Aborted": "ABORTED",
    "FailedPrecondition": "FAILED_PRECONDITION",
}


def collect_ghz(run: ToolRun, recorder: Recorder) -> int:
    """Record every ghz request as one attempt (and one call); return how many."""
    if not run.output.exists():
        logger.warning("ghz wrote no report: %s", run.log.read_text(errors="replace")[-500:])
        return 0
    report = json.loads(run.output.read_text() or "{}")
    count = 0
    for detail in report.get("details") or []:
        code = GRPC_STATUS_NAMES.get(str(detail.get("status", "")), str(detail.get("status")))
        if code == "UNKNOWN" and "connection" in str(detail.get("error", "")).lower():
            code = "UNAVAILABLE"
        _record(recorder, "ghz.ListStrategyKinds", "ghz", _time(detail["timestamp"]),
                float(detail["latency"]) / 1e9, code, str(detail.get("error", "")))
        count += 1
    return count


async def collect_vegeta(run: ToolRun, recorder: Recorder) -> int:
    """Decode vegeta's results (``vegeta encode --to json``) into attempts."""
    vegeta = binary("vegeta")
    if vegeta is None or not run.output.exists():
        return 0
    proc = await asyncio.create_subprocess_exec(
        str(vegeta), "encode", "--to", "json", str(run.output),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    count = 0
    for line in out.splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        status = int(r.get("code", 0))
        code = "OK" if status == 200 else ("NETWORK" if status == 0 else f"HTTP_{status}")
        _record(recorder, "vegeta.ListStrategies", "vegeta", _time(r["timestamp"]),
                float(r["latency"]) / 1e9, code, str(r.get("error", "")))
        count += 1
    return count


def _record(recorder: Recorder, op: str, caller: str, start: float, latency: float,
            code: str, detail: str) -> None:
    call_id = recorder.new_call()
    retryable = code != "OK" and is_retryable_code(code)
    from usdcarb.soak.load import Attempt

    recorder.attempts.append(Attempt(op, caller, call_id, 1, start, latency, code, retryable,
                                     detail[:300]))
    recorder.calls.append(CallRecord(op, caller, call_id, start, start + latency, 1, code,
                                     code == "OK"))
