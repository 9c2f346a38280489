"""The soak's fault schedule: which fault, on what, when, for how long — from a seed.

``FaultSchedule.build(seed, duration_s)`` is a pure function of its arguments: the same
seed and duration give the same windows, so a failing soak can be rerun exactly. Faults
fall in the middle of the run only — none in the first 15 % (the "before" baseline) nor
in the last 20 % (the "after" figures and the recovery) — and never overlap: each is
placed after the expected recovery of the one before it, with seeded slack between them.
The runner (``faults.SoakFaults.run``) also waits for the previous fault to recover before
it injects the next one, so windows stay apart even when a recovery takes longer than
expected.

Kinds and what they do (``faults.py``):

=====================  ==========  =================================================
kind                   target      the fault
=====================  ==========  =================================================
pg_restart_fast        postgres    ``pg_ctl stop -m fast``, start on the same port
pg_restart_immediate   postgres    ``pg_ctl stop -m immediate`` (a crash: recovery)
redis_kill             redis       SIGKILL, start on the same port and AOF
service_kill           <service>   SIGKILL one replica (params.replica), restart it
envoy_hot_restart      envoy       Envoy's next --restart-epoch takes the listeners over
replay_429             replay      every exchange request answers 429 for duration_s
replay_5xx             replay      every exchange request answers 5xx for duration_s
slow_leg               proxy:...   the ingestion→exchange leg gets latency, jitter, a
                                   bandwidth limit and connection resets for duration_s
=====================  ==========  =================================================
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["FAULT_KINDS", "SERVICES", "SLOW_LEG", "FaultSchedule", "FaultWindow", "expected_s"]

SERVICES = ("strategy", "ingestion", "validation", "backtest", "notification", "identity",
            "ratelimit")
SLOW_LEG = "proxy:ingestion-replay"
FAULT_KINDS = ("pg_restart_fast", "pg_restart_immediate", "redis_kill", "service_kill",
               "envoy_hot_restart", "replay_429", "replay_5xx", "slow_leg")
# What a run of at most SHORT_RUN_S seconds gets by default: one of each family.
SHORT_RUN_S = 60.0
BEFORE_SHARE = 0.15  # no fault in the first 15 % of the run
AFTER_SHARE = 0.20  # nor in the last 20 %
# Seconds each fault is expected to take until its component serves again (held time
# included), on this 2-core machine under the soak's load; the schedule leaves that much
# room after each. An Envoy hot restart waits out its parent's drain and shutdown.
EXPECTED_S = {"pg_restart_fast": 4.0, "pg_restart_immediate": 5.0, "redis_kill": 3.0,
              "service_kill": 6.0, "envoy_hot_restart": 12.0, "replay_429": 6.0,
              "replay_5xx": 6.0, "slow_leg": 10.0}
# A restarted backtest replica serves once its engine workers are warm (numba's cache
# loaded): 15-45 s under the soak's load; ingestion imports ccxt's exchanges first.
EXPECTED_KILL_S = {"backtest": 30.0, "ingestion": 12.0}
HELD_S = {"replay_429": 3.0, "replay_5xx": 3.0, "slow_leg": 6.0}


def expected_s(kind: str, target: str) -> float:
    """Seconds the schedule leaves for ``kind`` on ``target`` until the next window."""
    if kind == "service_kill":
        return EXPECTED_KILL_S.get(target, EXPECTED_S[kind])
    return EXPECTED_S[kind]


@dataclass(frozen=True)
class FaultWindow:
    """One fault: ``kind`` on ``target`` from ``start_s`` (after the load starts) for
    ``duration_s`` (0 for an instant kill or restart; recovery is measured apart)."""

    kind: str
    target: str
    start_s: float
    duration_s: float
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"expected a kind among {FAULT_KINDS}, got {self.kind!r}")
        if self.start_s < 0 or self.duration_s < 0:
            raise ValueError(f"expected start_s, duration_s >= 0, got {self.start_s}, "
                             f"{self.duration_s}")


@dataclass(frozen=True)
class FaultSchedule:
    """The windows of one run, in time order."""

    seed: int
    duration_s: float
    windows: list[FaultWindow]

    @classmethod
    def build(cls, seed: int, duration_s: float,
              kinds: Sequence[str] | None = None) -> FaultSchedule:
        """Return the schedule of a run of ``duration_s`` seconds for ``seed``.

        ``kinds``: the kinds to inject (default: all; for runs of at most 60 s one of each
        family — a PostgreSQL restart in a seeded mode, the Redis kill, one service kill,
        the Envoy hot restart and one replay burst). ``service_kill`` means one replica of
        every service, each its own window; ``service_kill:N`` N services among those
        that restart quickly (not backtest, ingestion).
        """
        if duration_s <= 0:
            raise ValueError(f"expected duration_s > 0, got {duration_s}")
        rng = random.Random(f"usdcarb-soak-faults:{seed}")
        if kinds is None:
            if duration_s <= SHORT_RUN_S:
                kinds = (rng.choice(("pg_restart_fast", "pg_restart_immediate")), "redis_kill",
                         "service_kill:1", "envoy_hot_restart",
                         rng.choice(("replay_429", "replay_5xx")))
            else:
                kinds = FAULT_KINDS
        unknown = sorted({k.split(":")[0] for k in kinds} - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"expected kinds among {FAULT_KINDS}, got {unknown}")
        planned: list[tuple[str, str, dict[str, Any]]] = []
        for kind in kinds:
            planned += _windows_of(kind, rng)
        rng.shuffle(planned)
        first = duration_s * BEFORE_SHARE
        last = duration_s * (1 - AFTER_SHARE)
        need = sum(expected_s(kind, target) for kind, target, _ in planned)
        # The room left is spread as seeded gaps before each window (none if too short:
        # then the windows follow one another and the runner's waits stretch them).
        slack = max(0.0, (last - first) - need)
        weights = [rng.random() + 0.2 for _ in range(len(planned) + 1)]
        gaps = [slack * w / sum(weights) for w in weights]
        windows, at = [], first
        for (kind, target, params), gap in zip(planned, gaps, strict=False):
            at += gap
            windows.append(FaultWindow(kind, target, round(at, 3), HELD_S.get(kind, 0.0),
                                       params))
            at += expected_s(kind, target)
        return cls(seed, duration_s, windows)

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "duration_s": self.duration_s,
                "windows": [asdict(w) for w in self.windows]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultSchedule:
        return cls(int(data["seed"]), float(data["duration_s"]),
                   [FaultWindow(**w) for w in data["windows"]])


def _windows_of(kind: str, rng: random.Random) -> list[tuple[str, str, dict[str, Any]]]:
    """The (kind, target, params) of one requested kind ("service_kill:1": one service)."""
    base, _, count = kind.partition(":")
    if base in ("pg_restart_fast", "pg_restart_immediate"):
        return [(base, "postgres", {"mode": base.rsplit("_", 1)[1]})]
    if base == "redis_kill":
        return [(base, "redis", {"signal": "SIGKILL"})]
    if base == "service_kill":
        services = list(SERVICES)
        if count:  # a sample of the quick restarts (a short run has no time for warm-ups)
            quick = [s for s in services if s not in EXPECTED_KILL_S]
            services = rng.sample(quick, min(int(count), len(quick)))
        return [(base, s, {"replica": rng.choice((1, 2))}) for s in services]
    if base == "envoy_hot_restart":
        return [(base, "envoy", {})]
    if base == "replay_429":
        return [(base, "replay", {"status": 429})]
    if base == "replay_5xx":
        return [(base, "replay", {"status": rng.choice((500, 502, 503, 504))})]
    # slow_leg: an exchange across an ocean on a bad day.
    return [(base, SLOW_LEG, {"latency_ms": rng.choice((150, 250, 400)),
                              "jitter_ms": rng.choice((50, 100, 200)),
                              "bandwidth_bps": rng.choice((32_000, 64_000, 128_000)),
                              "resets": rng.choice((1, 2, 3))})]
