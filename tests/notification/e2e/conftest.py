"""The whole mesh for the notification end-to-end tests, its email going to a real local
SMTP server (aiosmtpd) this session starts first."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from notification.nt_helpers import SmtpServer
from testkit import trust_stack
from usdcarb.devstack import free_port, scratch_dir
from usdcarb.devstack.stack import Stack, StackInfo


@pytest.fixture(scope="session")
def mail_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def stack(mail_server: SmtpServer) -> Iterator[StackInfo]:
    root = scratch_dir("usdcarb-notify-e2e-")
    mesh = Stack(root / "stack", gateway_port=free_port(), fast_postgres=True,
                 env={"USDCARB_NOTIFICATION_SMTP_PORT": str(mail_server.port),
                      "USDCARB_NOTIFICATION_BACKOFF_BASE_S": "0.2"})
    try:
        info = mesh.up()
        trust_stack(info)
        yield info
    finally:
        mesh.down()
        shutil.rmtree(root, ignore_errors=True)
