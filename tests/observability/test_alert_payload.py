"""Alertmanager's webhook payload becomes one domain event per alert."""

from __future__ import annotations

from typing import Any

import pytest

from usdcarb.notification.alerts import BadPayload, events_from_payload

pytestmark = pytest.mark.unit


def _payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {"version": "4", "status": "firing", "receiver": "notification",
            "groupKey": "{}:{alertname=\"ServiceDown\"}", "alerts": list(alerts)}


def _alert(status: str = "firing", **labels: str) -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": "ServiceDown", **labels},
            "annotations": {"summary": "strategy is down"},
            "startsAt": "2026-03-10T12:00:00.123Z", "endsAt": "2026-03-10T12:05:00Z",
            "fingerprint": "abc123", "generatorURL": "http://prometheus/graph"}


def test_firing_and_resolved_alerts_become_typed_events_on_the_alert_subject() -> None:
    [fired] = events_from_payload(_payload(_alert(severity="critical", job="strategy")))
    assert fired.type == "EVENT_TYPE_ALERT_FIRING" and fired.source == "alertmanager"
    assert fired.subject == "alerts/ServiceDown" and fired.summary == "strategy is down"
    assert fired.severity == "SEVERITY_ERROR"
    assert fired.data["labels"]["job"] == "strategy"
    [resolved] = events_from_payload(_payload(_alert("resolved", severity="critical")))
    assert resolved.type == "EVENT_TYPE_ALERT_RESOLVED"
    assert resolved.summary == "resolved: strategy is down"
    assert resolved.severity == "SEVERITY_INFO"
    assert resolved.time_ms == 1_773_144_300_000
    assert resolved.key != fired.key


def test_a_resent_alert_keeps_its_key_so_it_is_delivered_once() -> None:
    [a] = events_from_payload(_payload(_alert(severity="warning")))
    [b] = events_from_payload(_payload(_alert(severity="warning")))
    assert a.key == b.key and a.severity == "SEVERITY_WARNING"


@pytest.mark.parametrize(("payload", "message"), [
    ([], "expected a JSON object"),
    ({"version": "3", "alerts": []}, "expected version"),
    ({"version": "4", "alerts": {}}, "expected alerts to be a list"),
    (_payload({**_alert(), "status": "pending"}), "status firing or resolved"),
    (_payload({**_alert(), "labels": {"job": "x"}}), "alertname"),
    (_payload({**_alert(), "labels": {"alertname": 3}}), "object of strings"),
    (_payload({**_alert(), "startsAt": "yesterday"}), "RFC 3339"),
])
def test_anything_but_an_alertmanager_payload_is_refused_saying_what_was_expected(
        payload: Any, message: str) -> None:
    with pytest.raises(BadPayload, match=message):
        events_from_payload(payload)
