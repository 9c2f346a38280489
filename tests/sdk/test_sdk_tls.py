"""Which targets the SDK calls over TLS, and which CA it trusts."""

from __future__ import annotations

from pathlib import Path

import pytest

from usdcarb.platform import tls
from usdcarb_sdk._common import CA_FILE_ENV, parse_target

pytestmark = pytest.mark.unit


def test_https_or_a_ca_file_means_tls_and_http_or_a_bare_address_plaintext(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CA_FILE_ENV, raising=False)
    ca = tls.ensure_dev_pki(tmp_path / "tls", {}).ca
    assert parse_target("127.0.0.1:8080", None).credentials is None
    assert parse_target("http://localhost:8080", None).credentials is None
    secured = parse_target("https://localhost", None)
    assert secured.address == "localhost:443" and secured.credentials is not None
    with_ca = parse_target("127.0.0.1:8080", None, ca_file=ca)
    assert with_ca.address == "127.0.0.1:8080" and with_ca.credentials is not None


def test_https_targets_trust_the_ca_named_by_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CA_FILE_ENV, str(tmp_path / "missing.pem"))
    with pytest.raises(FileNotFoundError):  # read: the variable is what it trusts
        parse_target("https://localhost:8080", None)
    assert parse_target("http://localhost:8080", None).credentials is None
    ca = tls.ensure_dev_pki(tmp_path / "tls", {}).ca
    monkeypatch.setenv(CA_FILE_ENV, str(ca))
    assert parse_target("https://localhost:8080", None).credentials is not None
