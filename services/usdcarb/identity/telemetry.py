"""Domain metrics of the identity service, counted from its audit log as it is written.

Every security-relevant outcome goes through ``IdentityStore.insert_audit`` (refusals
included), so counting there sees all of them:
``usdcarb_identity_logins_total{outcome="success|refused",reason}`` and
``usdcarb_identity_refusals_total{action,reason}`` (token refreshes, API keys, denied calls,
lockouts). Actions and reasons are closed sets of literals in the code; anything else
is counted as ``other`` so no label can grow with input.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from prometheus_client import CollectorRegistry, Counter

_ACTIONS = frozenset({"login.success", "login.failure", "token.refresh", "user.lockout",
                      "apikey.exchange", "call.denied", "service.token", "password.change"})
_REASON = re.compile(r"[a-z][a-z _-]{0,31}")


def _label(value: Any, known: frozenset[str] | None = None) -> str:
    text = str(value or "").strip().lower()
    if known is not None:
        return text if text in known else "other"
    return text if _REASON.fullmatch(text) else ("none" if not text else "other")


class IdentityTelemetry:
    """The identity service's domain metrics, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.logins = Counter("usdcarb_identity_logins", "Password logins, by outcome and "
                              "the refusal's reason.", ["outcome", "reason"], registry=registry)
        self.refusals = Counter("usdcarb_identity_refusals", "Refused security actions "
                                "(besides logins), by action and reason.", ["action", "reason"],
                                registry=registry)

    def count(self, record: Any) -> None:
        """Count one audit record (usdcarb.identity.model.AuditRecord)."""
        action = str(record.action)
        reason = _label((record.details or {}).get("reason"))
        if action == "login.success":
            self.logins.labels("success", "none").inc()
        elif action == "login.failure":
            self.logins.labels("refused", reason).inc()
        elif record.outcome != "success":
            self.refusals.labels(_label(action, _ACTIONS), reason).inc()

    def watch(self, store: Any) -> None:
        """Count every record ``store.insert_audit`` writes."""
        insert = store.insert_audit

        @functools.wraps(insert)
        async def counted(record: Any, *args: Any, **kwargs: Any) -> Any:
            result = await insert(record, *args, **kwargs)
            self.count(record)
            return result

        store.insert_audit = counted
