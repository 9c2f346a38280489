"""Composition root of the notification service: ``python -m usdcarb.notification.main``.

Its RPCs are later work: they answer UNIMPLEMENTED naming the notification service (a later issue).
The process still serves health, reflection and metrics, and migrates its schema.
"""

from __future__ import annotations

from pathlib import Path

from usdcarb.platform.bootstrap import run, serve_pending
from usdcarb.platform.settings import PlatformSettings, service_config

SERVICE = "usdcarb.v1.NotificationService"


class NotificationSettings(PlatformSettings):
    """Settings of the notification service (environment variables USDCARB_NOTIFICATION_*)."""

    model_config = service_config("USDCARB_NOTIFICATION_")


def main() -> None:
    settings = NotificationSettings()
    run(settings, lambda: serve_pending(
        settings, service=SERVICE, pb2_module="usdcarb.v1.notification_pb2", schema="notification",
        migrations=Path(__file__).with_name("migrations"), owner="the notification service (a later issue)"))


if __name__ == "__main__":
    main()
