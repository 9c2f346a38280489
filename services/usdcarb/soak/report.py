"""The soak's report: what was asked, what failed and when, how fast it came back, and
the accounting table; text and JSON under ``<out>/`` (report.txt, report.json,
attempts.jsonl with every attempt).

An error is *explained* when its call was retried to success by the client (a
retryable status), or when it is a retryable status inside a documented fault window:
from the fault's start to WINDOW_GRACE_S after its component answered healthy again
(the time clients need to see it: Envoy's health checks, connection pools). Any other
error fails the run, as does any non-zero count in the accounting table or a process of
the soak left running.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from usdcarb.soak.load import Attempt, Recorder
from usdcarb.soak.workers import Ledger

WINDOW_GRACE_S = 10.0
BASELINE_S = 15.0  # the "before" and "after" spans around each fault
# The operations the text report shows around each fault (report.json has them all).
TEXT_OPS = ("ghz.ListStrategyKinds", "vegeta.ListStrategies", "rest.CreateStrategy",
            "grpc.UpdateStrategy", "rest.CreateBacktest", "grpc.CreateBacktest",
            "grpc.CreateIngestJob")
STREAMS = ("WatchBacktest", "WatchSweep", "WatchIngestJob", "SubscribeEvents")


def _field(record: Any, name: str) -> Any:
    if isinstance(record, dict):
        return record.get(name)
    return getattr(record, name, None)


def windows(faults: list[Any]) -> list[tuple[float, float, str]]:
    """(start, end, label) of each fault, end = recovered (or lifted) + grace."""
    out = []
    for f in faults:
        start = float(_field(f, "start"))
        end = float(_field(f, "recovered_at") or _field(f, "end") or start)
        out.append((start, end + WINDOW_GRACE_S, f"{_field(f, 'kind')}:{_field(f, 'target')}"))
    return out


def _in_window(t: float, spans: list[tuple[float, float, str]]) -> str:
    for start, end, label in spans:
        if start <= t <= end:
            return label
    return ""


def _stats(latencies: list[float]) -> dict[str, Any]:
    if not latencies:
        return {"n": 0}
    a = np.array(latencies) * 1000
    return {"n": len(latencies), "p50_ms": round(float(np.percentile(a, 50)), 1),
            "p99_ms": round(float(np.percentile(a, 99)), 1), "max_ms": round(float(a.max()), 1)}


def _unary(a: Attempt) -> bool:
    return not any(s in a.op for s in STREAMS)


def classify_errors(recorder: Recorder, spans: list[tuple[float, float, str]]
                    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Error counts by code (retryable or not) and the errors nothing explains."""
    succeeded = {c.call_id for c in recorder.calls if c.ok}
    by_code: Counter[str] = Counter()
    retryable: Counter[str] = Counter()
    unexplained = []
    for a in recorder.attempts:
        if a.code == "OK":
            continue
        by_code[a.code] += 1
        if a.retryable:
            retryable[a.code] += 1
        # Judged when the error arrived: a stream's attempt starts long before it breaks.
        window = _in_window(a.start + a.latency_s, spans) or _in_window(a.start, spans)
        if a.retryable and (a.call_id in succeeded or window):
            continue
        unexplained.append({"op": a.op, "caller": a.caller, "time": a.start + a.latency_s,
                            "code": a.code,
                            "retryable": a.retryable, "window": window,
                            "detail": a.detail[:200]})
    return ({"by_code": dict(by_code), "retryable": dict(retryable),
             "non_retryable": {k: v for k, v in by_code.items() if k not in retryable}},
            unexplained)


def per_fault(recorder: Recorder, faults: list[Any]) -> list[dict[str, Any]]:
    """Latency per operation before / during / after each fault, and recovery times."""
    out = []
    unary = [a for a in recorder.attempts if _unary(a)]
    for f in faults:
        start = float(_field(f, "start"))
        lifted = float(_field(f, "end") or start)
        recovered = _field(f, "recovered_at")
        until = float(recovered) if recovered is not None else lifted
        phases = {"before": (start - BASELINE_S, start), "during": (start, until),
                  "after": (until, until + BASELINE_S)}
        ops: dict[str, dict[str, Any]] = defaultdict(dict)
        for phase, (lo, hi) in phases.items():
            by_op: dict[str, list[float]] = defaultdict(list)
            for a in unary:
                if lo <= a.start < hi:
                    by_op[a.op].append(a.latency_s)
            for op, lat in by_op.items():
                ops[op][phase] = _stats(lat)
        errors = [a for a in recorder.attempts
                  if a.code != "OK" and start <= a.start <= until + WINDOW_GRACE_S]
        last_error = max((a.start for a in errors), default=None)
        client_recovery = 0.0
        if last_error is not None:
            first_ok = min((a.start + a.latency_s for a in recorder.attempts
                            if a.code == "OK" and a.start >= last_error), default=None)
            client_recovery = (first_ok - start) if first_ok is not None else float("inf")
        out.append({
            "kind": _field(f, "kind"), "target": _field(f, "target"),
            "detail": _field(f, "detail"), "start": start, "lifted": lifted,
            "recovered_at": recovered,
            "component_recovery_s": None if recovered is None else round(float(recovered) - start, 2),
            "client_recovery_s": round(client_recovery, 2),
            "errors_in_window": dict(Counter(a.code for a in errors)),
            "latency": ops})
    return out


def build(*, settings: Any, run_id: str, recorder: Recorder, ledger: Ledger,
          faults: list[Any], schedule: Any, accounting: dict[str, Any],
          phases: dict[str, float], tool_counts: dict[str, int], error: str) -> dict[str, Any]:
    spans = windows(faults)
    errors, unexplained = classify_errors(recorder, spans)
    load_start = phases.get("load_start", 0.0)
    ops: dict[str, dict[str, Any]] = {}
    by_op: dict[str, list[Attempt]] = defaultdict(list)
    for a in recorder.attempts:
        by_op[a.op].append(a)
    for op, attempts in sorted(by_op.items()):
        calls = [c for c in recorder.calls if c.op == op]
        ops[op] = {"attempts": len(attempts), "calls": len(calls),
                   "succeeded": sum(1 for c in calls if c.ok),
                   "errors": dict(Counter(a.code for a in attempts if a.code != "OK")),
                   **({"latency": _stats([a.latency_s for a in attempts if a.code == "OK"])}
                      if _unary(attempts[0]) else {})}
    totals = accounting.get("totals", {})
    left = accounting.get("processes", {}).get("left_running", [])
    counts_zero = all(int(totals.get(k, 1)) == 0 for k in ("lost", "duplicated", "stuck", "wrong"))
    # A fault that could not be applied, or after which its component never answered
    # again, fails the run: the figures would claim a fault that did not happen.
    not_recovered = [f"{_field(f, 'kind')}:{_field(f, 'target')}" for f in faults
                     if _field(f, "recovered_at") is None]
    if not_recovered and not error:
        error = "faults not applied or never recovered: " + ", ".join(not_recovered)
    passed = bool(accounting.get("rows")) and counts_zero and not unexplained and not left \
        and not error
    jobs = {
        "backtests": _job_summary(ledger.backtests.values()),
        "sweeps": _job_summary(ledger.sweeps.values()),
        "ingest_windows": dict(Counter(a.outcome or "none" for a in ledger.ingests)),
        "webhook_receipts": sum(ledger.webhook_received.values()),
        "webhook_ids": len(ledger.webhook_received),
        "webhook_resent_same_id": sum(n - 1 for n in ledger.webhook_received.values() if n > 1),
        "webhook_bad_signatures": ledger.webhook_bad_signatures,
        "events_streamed": len(ledger.events_seen),
        "events_repeated_after_resume": sum(n - 1 for n in ledger.events_seen.values() if n > 1),
        "subscribe_resumes": ledger.subscribe_resumes,
    }
    return {
        "run": run_id, "passed": passed, "error": error,
        "settings": {k: str(v) if isinstance(v, Path) else v
                     for k, v in (asdict(settings) if is_dataclass(settings) and not isinstance(settings, type) else {}).items()},
        "phases": {k: round(v - phases.get("start", 0.0), 2) for k, v in phases.items()},
        "requests": {"attempts": len(recorder.attempts), "calls": len(recorder.calls),
                     "calls_ok": sum(1 for c in recorder.calls if c.ok),
                     "during_load": sum(1 for a in recorder.attempts
                                        if load_start <= a.start <= phases.get("load_end", 0)),
                     "load_tools": tool_counts},
        "errors": errors, "unexplained_errors": unexplained[:200],
        "unexplained_count": len(unexplained),
        "failed_calls": ledger.failed_calls[:100],
        "operations": ops, "jobs": jobs,
        "schedule": schedule,
        "faults": per_fault(recorder, faults),
        "accounting": accounting,
    }


def _job_summary(acks: Any) -> dict[str, Any]:
    acks = list(acks)
    return {"acknowledged": len(acks),
            "outcomes": dict(Counter(a.outcome or "none" for a in acks)),
            "by_transport": dict(Counter(a.transport for a in acks)),
            "stream_resumes": sum(a.resumes for a in acks)}


def text(doc: dict[str, Any]) -> str:
    """The report for a person: headline, requests, faults, accounting."""
    lines = [f"soak {doc['run']}: {'PASSED' if doc['passed'] else 'FAILED'}"
             + (f" ({doc['error']})" if doc["error"] else "")]
    s = doc["settings"]
    r = doc["requests"]
    lines.append(f"load {s.get('seconds')} s, seed {s.get('seed')}: {r['attempts']} attempts, "
                 f"{r['calls']} calls ({r['calls_ok']} ok); load tools {r['load_tools']}")
    e = doc["errors"]
    lines.append(f"errors by code: {e['by_code'] or 'none'}; non-retryable: "
                 f"{e['non_retryable'] or 'none'}; unexplained: {doc['unexplained_count']}")
    for u in doc["unexplained_errors"][:10]:
        lines.append(f"  unexplained {u['op']} {u['code']} ({u['caller']}): {u['detail'][:120]}")
    lines.append("")
    lines.append(f"{'operation':34} {'calls':>7} {'ok':>7} {'attempts':>8} {'p50 ms':>8} "
                 f"{'p99 ms':>8} {'max ms':>8}  errors")
    for op, o in doc["operations"].items():
        lat = o.get("latency", {})
        lines.append(f"{op:34} {o['calls']:>7} {o['succeeded']:>7} {o['attempts']:>8} "
                     f"{lat.get('p50_ms', '-'):>8} {lat.get('p99_ms', '-'):>8} "
                     f"{lat.get('max_ms', '-'):>8}  {o['errors'] or ''}")
    lines.append("")
    j = doc["jobs"]
    lines.append(f"backtests {j['backtests']}")
    lines.append(f"sweeps {j['sweeps']}")
    lines.append(f"ingest windows {j['ingest_windows']}; webhook receipts {j['webhook_receipts']} "
                 f"({j['webhook_ids']} ids, {j['webhook_resent_same_id']} resent with the same "
                 f"id); events streamed {j['events_streamed']} (resumes "
                 f"{j['subscribe_resumes']})")
    lines.append("")
    lines.append(f"{'fault':36} {'component s':>11} {'client s':>9}  errors in window")
    for f in doc["faults"]:
        lines.append(f"{str(f['kind']) + ':' + str(f['target']):36} "
                     f"{f['component_recovery_s'] if f['component_recovery_s'] is not None else 'never':>11} "
                     f"{f['client_recovery_s']:>9}  {f['errors_in_window'] or ''}")
        for op, phases in sorted(f["latency"].items()):
            if op not in TEXT_OPS:
                continue  # report.json has every operation
            cells = "  ".join(f"{p}: p50 {v.get('p50_ms', '-')} p99 {v.get('p99_ms', '-')} "
                              f"max {v.get('max_ms', '-')} (n={v['n']})"
                              for p, v in phases.items())
            lines.append(f"    {op:30} {cells}")
    if not doc["faults"]:
        lines.append("(no faults injected)")
    lines.append("")
    acc = doc["accounting"]
    lines.append(f"{'accounting':26} {'checked':>8} {'lost':>6} {'dup':>6} {'stuck':>6} "
                 f"{'wrong':>6}")
    for name, row in acc.get("rows", {}).items():
        lines.append(f"{name:26} {row['checked']:>8} {row['lost']:>6} {row['duplicated']:>6} "
                     f"{row['stuck']:>6} {row['wrong']:>6}")
        for example in row["examples"][:4]:
            lines.append(f"    {example}")
    t = acc.get("totals", {})
    lines.append(f"{'total':26} {'':>8} {t.get('lost', '?'):>6} {t.get('duplicated', '?'):>6} "
                 f"{t.get('stuck', '?'):>6} {t.get('wrong', '?'):>6}")
    left = acc.get("processes", {}).get("left_running", [])
    lines.append(f"processes of the soak left running: {len(left)}")
    lines.extend(f"    {p}" for p in left)
    return "\n".join(lines) + "\n"


def write(out: Path, doc: dict[str, Any], recorder: Recorder) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(doc, indent=1, default=str))
    (out / "report.txt").write_text(text(doc))
    with (out / "attempts.jsonl").open("w") as f:
        for a in recorder.attempts:
            f.write(json.dumps(asdict(a)) + "\n")


def write_ledger(out: Path, ledger: Ledger) -> None:
    """What the clients were told, job by job (for following up a failed accounting)."""
    data = {"backtests": [asdict(a) for a in ledger.backtests.values()],
            "sweeps": [asdict(a) for a in ledger.sweeps.values()],
            "ingests": [asdict(a) for a in ledger.ingests],
            "strategies": {k: {**asdict(v), "versions": sorted(v.versions)}
                           for k, v in ledger.strategies.items()},
            "events_seen": dict(ledger.events_seen), "event_subjects": ledger.event_subjects,
            "webhook_received": dict(ledger.webhook_received),
            "webhook_subjects": ledger.webhook_subjects, "failed_calls": ledger.failed_calls}
    (out / "ledger.json").write_text(json.dumps(data, indent=1, default=str))
