"""When a failed call is tried again: idempotent methods only, with backoff and jitter.

UNAVAILABLE is retried with exponential backoff; RESOURCE_EXHAUSTED only when the
server says how long to wait (google.rpc.RetryInfo). Everything else, and any call that
is not safe to repeat, fails at once. UNAUTHENTICATED is handled apart: the token is
refreshed and the call repeated once, because the gateway rejected it before any
service saw it.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable

from usdcarb_sdk.errors import ResourceExhausted, Unauthenticated, Unavailable, UsdcarbError

__all__ = ["Attempts", "RetryPolicy"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How many times and how long apart to retry an idempotent call."""

    max_retries: int = 3
    initial_backoff: float = 0.2  # seconds before the first retry (before jitter)
    max_backoff: float = 5.0
    multiplier: float = 2.0
    max_retry_after: float = 30.0  # longest server-requested wait honoured; longer fails now

    def backoff(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        """Return the wait before retry number ``retry`` (from 0): half fixed, half jitter."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier**retry)
        return ceiling * (0.5 + rng() / 2)

    def delay(self, error: UsdcarbError, retry: int, idempotent: bool,
              rng: Callable[[], float] = random.random) -> float | None:
        """Return how long to wait before retrying after ``error``, or None not to retry."""
        if not idempotent or retry >= self.max_retries:
            return None
        hint = error.retry_after
        if isinstance(error, Unavailable):
            return max(self.backoff(retry, rng), hint or 0.0)
        if isinstance(error, ResourceExhausted) and hint is not None:
            if hint > self.max_retry_after:
                return None
            return hint * (1 + rng() / 10)  # a little jitter so waiting clients do not align
        return None


@dataclasses.dataclass(slots=True)
class Attempts:
    """Track the attempts of one call against its policy, token refresh and deadline."""

    policy: RetryPolicy
    idempotent: bool
    can_refresh: bool
    timeout: float | None
    clock: Callable[[], float] = time.monotonic
    retries: int = 0
    refreshed: bool = False
    deadline: float | None = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.deadline = None if self.timeout is None else self.clock() + self.timeout

    def remaining(self) -> float | None:
        """Return the seconds left before the call's deadline (None: no deadline)."""
        return None if self.deadline is None else max(0.0, self.deadline - self.clock())

    def should_refresh(self, error: UsdcarbError) -> bool:
        """Tell whether to refresh the token and repeat the call (once per call)."""
        if isinstance(error, Unauthenticated) and self.can_refresh and not self.refreshed:
            self.refreshed = True
            return True
        return False

    def next_delay(self, error: UsdcarbError) -> float | None:
        """Return the wait before the next attempt, or None when the call must fail now."""
        delay = self.policy.delay(error, self.retries, self.idempotent)
        if delay is None:
            return None
        left = self.remaining()
        if left is not None and delay >= left:
            return None
        self.retries += 1
        return delay
