"""``usdcarb notify``: channels, subscriptions, deliveries and a live event view.

    usdcarb notify channels list
    usdcarb notify channels create-webhook --name ops --url https://hooks.example.org/x \\
        --secret whsec_...
    usdcarb notify channels create-email --name desk --to quant@example.org,ops@example.org
    usdcarb notify channels test|delete channels/ID
    usdcarb notify channels rotate channels/ID --secret whsec_... [--overlap-hours 24]
    usdcarb notify subscriptions list [--channel channels/ID]
    usdcarb notify subscriptions create --channel channels/ID [--types gap-detected,...]
        [--min-severity warning] [--prefix series/]
    usdcarb notify subscriptions delete subscriptions/ID
    usdcarb notify deliveries list channels/ID [--state dead-lettered]
    usdcarb notify deliveries redeliver channels/ID [--delivery channels/ID/deliveries/D]
    usdcarb notify watch [--types ...] [--min-severity ...] [--prefix ...] [--after ID]

Common options: --gateway host:port (USDCARB_GATEWAY), --token JWT (USDCARB_TOKEN; without
one a development token is minted, dev/test only). ``watch`` follows SubscribeEvents and
resumes after the last event it printed whenever the stream ends or drops.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, TextIO

import grpc

from usdcarb_sdk import AsyncClient
from usdcarb_sdk._gen.usdcarb import v1
from usdcarb_sdk.errors import UsdcarbError


def _enum(enum: Any, text: str) -> Any:
    key = text.strip().upper().replace("-", "_")
    try:
        return enum[key]
    except KeyError:
        choices = ", ".join(m.name.lower().replace("_", "-") for m in enum if m.value)
        raise SystemExit(f"usdcarb notify: expected one of {choices}, got {text!r}") from None


def _types(text: str) -> list[Any]:
    return [_enum(v1.EventType, t) for t in text.split(",") if t.strip()]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="usdcarb notify", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gateway", default=os.environ.get("USDCARB_GATEWAY", "127.0.0.1:8080"))
    p.add_argument("--token", default=os.environ.get("USDCARB_TOKEN", ""))
    sub = p.add_subparsers(dest="area", required=True)
    ch = sub.add_parser("channels").add_subparsers(dest="action", required=True)
    ch.add_parser("list")
    w = ch.add_parser("create-webhook")
    w.add_argument("--name", required=True)
    w.add_argument("--url", required=True)
    w.add_argument("--secret", required=True, help='"whsec_" + base64 of 24-64 random bytes')
    w.add_argument("--max-attempts", type=int, default=0)
    e = ch.add_parser("create-email")
    e.add_argument("--name", required=True)
    e.add_argument("--to", required=True, help="comma-separated addresses")
    e.add_argument("--subject-prefix", default="")
    for action in ("test", "delete"):
        ch.add_parser(action).add_argument("channel")
    r = ch.add_parser("rotate")
    r.add_argument("channel")
    r.add_argument("--secret", required=True)
    r.add_argument("--overlap-hours", type=float, default=24.0)
    su = sub.add_parser("subscriptions").add_subparsers(dest="action", required=True)
    su.add_parser("list").add_argument("--channel", default="")
    c = su.add_parser("create")
    c.add_argument("--channel", required=True)
    c.add_argument("--types", default="", help="comma-separated, e.g. gap-detected")
    c.add_argument("--min-severity", default="unspecified")
    c.add_argument("--prefix", default="")
    su.add_parser("delete").add_argument("subscription")
    de = sub.add_parser("deliveries").add_subparsers(dest="action", required=True)
    dl = de.add_parser("list")
    dl.add_argument("channel")
    dl.add_argument("--state", default="unspecified")
    rd = de.add_parser("redeliver")
    rd.add_argument("channel")
    rd.add_argument("--delivery", default="")
    wa = sub.add_parser("watch")
    wa.add_argument("--types", default="")
    wa.add_argument("--min-severity", default="unspecified")
    wa.add_argument("--prefix", default="")
    wa.add_argument("--after", default="", help='event id to resume after ("0": all retained)')
    return p.parse_args(argv)


def _channel_line(c: Any) -> str:
    where = c.webhook.url if c.webhook is not None else ", ".join(c.email.to)
    kind = "webhook" if c.webhook is not None else "email"
    return f"{c.name}  {kind:7}  {c.display_name!r}  {where}"


def _event_line(e: Any) -> str:
    when = e.time.strftime("%H:%M:%S") if e.time is not None else "--:--:--"
    return f"{when}  {e.id:>20}  {e.severity.name:7}  {e.type.name:24}  {e.subject}  {e.summary}"


async def _watch(svc: Any, args: argparse.Namespace, out: TextIO) -> int:
    after = args.after
    while True:
        try:
            async for msg in svc.subscribe_events(v1.SubscribeEventsRequest(
                    event_types=_types(args.types), subject_prefix=args.prefix,
                    min_severity=_enum(v1.Severity, args.min_severity), after_id=after)):
                if msg.event is not None:
                    after = msg.event.id
                    out.write(_event_line(msg.event) + "\n")
                    out.flush()
                elif msg.outcome is not None and msg.outcome.error is not None:
                    out.write(f"# stream ended: {msg.outcome.error.message}; resuming\n")
        except UsdcarbError as exc:
            if exc.code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
        await asyncio.sleep(1.0)  # the server ended the stream: resume after ``after``


async def run(args: argparse.Namespace, out: TextIO) -> int:
    token = args.token
    if not token:
        from usdcarb.gateway.devtoken import mint_dev_token

        token = mint_dev_token(f"users/{os.environ.get('USER', 'cli')}", ["analyst"])
    async with AsyncClient(args.gateway, token=token) as client:
        svc = client.notifications
        key = (args.area, getattr(args, "action", ""))
        if key == ("channels", "list"):
            async for c in svc.iterate("list_channels"):
                out.write(_channel_line(c) + "\n")
        elif key == ("channels", "create-webhook"):
            c = await svc.create_channel(v1.CreateChannelRequest(channel=v1.Channel(
                display_name=args.name, webhook=v1.WebhookConfig(
                    url=args.url, secret=args.secret, max_attempts=args.max_attempts))))
            out.write(_channel_line(c) + "\n")
        elif key == ("channels", "create-email"):
            c = await svc.create_channel(v1.CreateChannelRequest(channel=v1.Channel(
                display_name=args.name, email=v1.EmailConfig(
                    to=[a.strip() for a in args.to.split(",") if a.strip()],
                    subject_prefix=args.subject_prefix))))
            out.write(_channel_line(c) + "\n")
        elif key == ("channels", "test"):
            d = await svc.test_channel(v1.TestChannelRequest(name=args.channel))
            out.write(f"{d.name}  {d.state.name}  code {d.response_code}  {d.last_error}\n")
            return 0 if d.state == v1.DeliveryState.DELIVERED else 1
        elif key == ("channels", "delete"):
            await svc.delete_channel(v1.DeleteChannelRequest(name=args.channel))
        elif key == ("channels", "rotate"):
            c = await svc.rotate_webhook_secret(v1.RotateWebhookSecretRequest(
                name=args.channel, secret=args.secret,
                overlap=timedelta(hours=args.overlap_hours)))
            out.write(f"{c.name}: previous secret signs until "
                      f"{c.previous_secret_expire_time}\n")
        elif key == ("subscriptions", "list"):
            async for s in svc.iterate("list_subscriptions", channel=args.channel):
                types = ",".join(t.name.lower() for t in s.event_types) or "all"
                out.write(f"{s.name}  {s.channel}  {types}  >= {s.min_severity.name.lower()}"
                          f"  {s.subject_prefix or '*'}  {'on' if s.enabled else 'paused'}\n")
        elif key == ("subscriptions", "create"):
            s = await svc.create_subscription(v1.CreateSubscriptionRequest(
                subscription=v1.Subscription(
                    channel=args.channel, event_types=_types(args.types), enabled=True,
                    min_severity=_enum(v1.Severity, args.min_severity),
                    subject_prefix=args.prefix)))
            out.write(f"{s.name}\n")
        elif key == ("subscriptions", "delete"):
            await svc.delete_subscription(v1.DeleteSubscriptionRequest(name=args.subscription))
        elif key == ("deliveries", "list"):
            async for d in svc.iterate("list_deliveries", parent=args.channel,
                                       state=_enum(v1.DeliveryState, args.state)):
                out.write(f"{d.name}  {d.state.name:13}  {d.attempts} attempt(s)  "
                          f"code {d.response_code}  {d.event.type.name}  {d.last_error}\n")
        elif key == ("deliveries", "redeliver"):
            r = await svc.redeliver_deliveries(v1.RedeliverDeliveriesRequest(
                parent=args.channel, delivery=args.delivery))
            out.write(f"{r.redelivered_count} delivery(ies) pending again\n")
        else:
            return await _watch(svc, args, out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return asyncio.run(run(args, sys.stdout))
    except UsdcarbError as exc:
        sys.stderr.write(f"usdcarb notify: {exc}\n")
        return 2 if exc.code == grpc.StatusCode.INVALID_ARGUMENT else 1
    except KeyboardInterrupt:
        return 130
