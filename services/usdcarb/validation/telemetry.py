"""Domain metrics of the validation service: findings by rule and severity.

``usdcarb_validation_findings_total{rule,severity}`` counts the findings the service
records (new ones: a batch validated twice counts once), severity ``info|warning|error``
(rules are a closed set, so both labels stay low-cardinality). Every rule's series
exists from the start at 0, so a rate over it is 0 rather than absent.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from usdcarb.validation.domain.model import RULES


class ValidationTelemetry:
    """The validation service's domain metrics, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.findings = Counter("usdcarb_validation_findings",
                                "Findings recorded, by rule and severity.",
                                ["rule", "severity"], registry=registry)
        for rule in RULES.values():
            self.findings.labels(rule.id, _severity(rule.severity))

    def count(self, issues: Sequence[Any]) -> None:
        """Count recorded issues (each with a ``finding`` of a rule and a severity)."""
        for issue in issues:
            finding = getattr(issue, "finding", issue)
            self.findings.labels(finding.rule, _severity(finding.severity)).inc()

    def watch(self, quality: Any) -> None:
        """Count what ``quality.record_findings`` records (the one place findings land)."""
        record = quality.record_findings

        @functools.wraps(record)
        async def counted(*args: Any, **kwargs: Any) -> Any:
            recorded = await record(*args, **kwargs)
            self.count(recorded)
            return recorded

        quality.record_findings = counted


def _severity(value: Any) -> str:
    return str(value).removeprefix("SEVERITY_").lower()
