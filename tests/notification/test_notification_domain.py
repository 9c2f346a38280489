"""Pure rules of the notification service."""

from __future__ import annotations

import random

import pytest

from notification.nt_helpers import new_secret
from usdcarb.notification import domain, emails
from usdcarb.notification.model import StoredEvent
from usdcarb.platform.events import DomainEvent

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("url", "env", "ok"), [
    ("https://hooks.example.org/x", "prod", True),
    ("https://8.8.8.8/x", "prod", True),
    ("http://hooks.example.org/x", "prod", False),
    ("https://10.0.0.1/x", "prod", False),
    ("https://172.16.5.4/x", "prod", False),
    ("https://169.254.169.254/x", "prod", False),
    ("https://[::ffff:10.0.0.1]/x", "prod", False),
    ("https://[fd00::1]/x", "prod", False),
    ("https://127.0.0.1/x", "prod", False),
    ("http://127.0.0.1:8080/x", "test", True),
    ("http://localhost:8080/x", "dev", True),
    ("http://169.254.169.254/x", "dev", False),
    ("ftp://example.org/x", "dev", False),
    ("example.org/x", "dev", False),
    ("https://example.org:99999/x", "dev", False),
])
def test_webhook_urls_are_checked_per_environment(url: str, env: str, ok: bool) -> None:
    assert (domain.check_webhook_url(url, env=env, field="u") == []) is ok


def test_secrets_follow_the_standard_webhooks_form() -> None:
    assert domain.check_secret(new_secret(), "s") == []
    assert domain.check_secret("whsec_c2hvcnQ=", "s")  # 5 bytes
    assert domain.check_secret("plain-text-secret-of-some-length", "s")


def test_filters_match_type_severity_and_subject_prefix() -> None:
    f = domain.Filter(event_types=frozenset({"EVENT_TYPE_GAP_DETECTED"}),
                      min_severity="SEVERITY_WARNING", subject_prefix="series/binance")
    assert f.matches(type_="EVENT_TYPE_GAP_DETECTED", severity="SEVERITY_ERROR",
                     subject="series/binance/USDC-USDT")
    assert not f.matches(type_="EVENT_TYPE_GAP_DETECTED", severity="SEVERITY_INFO",
                         subject="series/binance/USDC-USDT")
    assert not f.matches(type_="EVENT_TYPE_DATA_ISSUE", severity="SEVERITY_ERROR",
                         subject="series/binance/USDC-USDT")
    assert not f.matches(type_="EVENT_TYPE_GAP_DETECTED", severity="SEVERITY_ERROR",
                         subject="series/kraken/USDC-USDT")
    assert domain.Filter().matches(type_="EVENT_TYPE_TEST", severity="SEVERITY_INFO", subject="")


def test_delivery_ids_are_stable_per_event_and_subscription() -> None:
    assert domain.delivery_id("1-0", "s1") == domain.delivery_id("1-0", "s1")
    assert domain.delivery_id("1-0", "s1") != domain.delivery_id("1-0", "s2")


@pytest.mark.parametrize(("status", "verdict"), [
    (200, domain.Verdict.DELIVERED), (204, domain.Verdict.DELIVERED),
    (429, domain.Verdict.RETRY), (503, domain.Verdict.RETRY), (500, domain.Verdict.RETRY),
    (408, domain.Verdict.RETRY), (400, domain.Verdict.DEAD), (404, domain.Verdict.DEAD),
    (410, domain.Verdict.DEAD), (301, domain.Verdict.DEAD),
])
def test_http_answers_decide_retry_or_dead_letter(status: int, verdict: domain.Verdict) -> None:
    assert domain.http_verdict(status) is verdict


def test_smtp_codes_decide_retry_or_dead_letter() -> None:
    assert domain.smtp_verdict(250) is domain.Verdict.DELIVERED
    assert domain.smtp_verdict(451) is domain.Verdict.RETRY
    assert domain.smtp_verdict(550) is domain.Verdict.DEAD


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    b = domain.Backoff(base_s=1.0, cap_s=60.0)
    rng = random.Random(7)
    for attempt in range(1, 8):
        waits = [b.delay(attempt, rng=rng) for _ in range(200)]
        d = min(60.0, 2.0 ** (attempt - 1))
        assert 0.75 * d <= min(waits) and max(waits) <= d
        assert len(set(waits)) > 100  # jitter
    assert all(b.delay(n, rng=rng) < b.delay(n + 1, rng=rng) for n in range(1, 6))
    assert b.delay(1, retry_after_s=30.0) == 30.0
    assert domain.Backoff(max_retry_after_s=10).delay(1, retry_after_s=1e9) == 10.0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert domain.parse_retry_after("120", now_s=0) == 120.0
    assert domain.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT",
                                    now_s=1445412480 - 60) == 60.0
    assert domain.parse_retry_after("soon", now_s=0) is None
    assert domain.parse_retry_after(None, now_s=0) is None


def test_emails_have_a_readable_subject_and_both_bodies() -> None:
    event = StoredEvent(id="1-0", event=DomainEvent(
        type="EVENT_TYPE_GAP_DETECTED", source="validation", subject="series/binance/USDC",
        summary="3 bars missing <b>", severity="SEVERITY_WARNING",
        data={"bars": 3, "start": "2023-03-10T00:00:00Z"}, time_ms=1_678_406_400_000))
    mail = emails.render(event, subject_prefix="[ops]")
    assert mail.subject == "[ops] [warning] Gap in market data: 3 bars missing <b>"
    assert "bars" in mail.text and "2023-03-10T00:00:00Z" in mail.text
    assert "&lt;b&gt;" in mail.html and "<b>" not in mail.html.replace("<body>", "")
