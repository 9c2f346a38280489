"""The development CA and mutual TLS: files, idempotence, real handshakes (gRPC and HTTPS)."""

from __future__ import annotations

import asyncio
import ssl
import stat
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

from usdcarb.platform import tls
from usdcarb.platform.settings import PlatformSettings
from usdcarb.platform.testing import settings_for_tests, start_in_process

LEAVES = {"gateway": tls.LOCALHOST, "strategy": tls.service_names("strategy"),
          "envoy": ("envoy",)}


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _sans(cert: x509.Certificate) -> set[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n.value) for n in ext}


@pytest.mark.unit
def test_dev_pki_issues_leaves_for_their_names_from_one_ca(tmp_path: Path) -> None:
    pki = tls.ensure_dev_pki(tmp_path / "tls", LEAVES)
    ca = _cert(pki.ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for name, names in LEAVES.items():
        leaf = _cert(pki.cert(name))
        leaf.verify_directly_issued_by(ca)
        assert _sans(leaf) == set(names)
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        key = serialization.load_pem_private_key(pki.key(name).read_bytes(), password=None)
        assert key.public_key() == leaf.public_key()


@pytest.mark.unit
def test_private_keys_are_0600_in_a_0700_folder(tmp_path: Path) -> None:
    pki = tls.ensure_dev_pki(tmp_path / "tls", LEAVES)
    assert stat.S_IMODE(pki.root.stat().st_mode) == 0o700
    for key in [pki.ca_key, *(pki.key(n) for n in LEAVES)]:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert not list(pki.root.glob(".*.tmp"))


@pytest.mark.unit
def test_dev_pki_is_idempotent_and_reissues_only_what_changed(tmp_path: Path) -> None:
    root = tmp_path / "tls"
    pki = tls.ensure_dev_pki(root, LEAVES)
    before = {p.name: p.read_bytes() for p in root.iterdir()}
    tls.ensure_dev_pki(root, LEAVES)
    assert {p.name: p.read_bytes() for p in root.iterdir()} == before

    # New names for one leaf: only that leaf is made again.
    tls.ensure_dev_pki(root, {**LEAVES, "strategy": ("strategy", "strategy.local")})
    assert _sans(_cert(pki.cert("strategy"))) == {"strategy", "strategy.local"}
    assert pki.cert("gateway").read_bytes() == before["gateway.pem"]
    assert pki.ca.read_bytes() == before["ca.pem"]


@pytest.mark.unit
def test_dev_pki_replaces_expiring_leaves_and_leaves_of_another_ca(tmp_path: Path) -> None:
    root = tmp_path / "tls"
    pki = tls.ensure_dev_pki(root, LEAVES)
    ca_cert = _cert(pki.ca)
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, tls.PrivateKey)
    short, key = tls.issue_certificate(ca_cert, ca_key, "gateway", tls.LOCALHOST, days=10)
    tls._save(short, key, pki.cert("gateway"), pki.key("gateway"))
    tls.ensure_dev_pki(root, LEAVES)
    assert _cert(pki.cert("gateway")).not_valid_after_utc > short.not_valid_after_utc

    old_leaf = pki.cert("envoy").read_bytes()
    pki.ca_key.unlink()  # a lost CA key: a new CA, and every leaf issued again by it
    tls.ensure_dev_pki(root, LEAVES)
    assert _cert(pki.ca) != ca_cert and pki.cert("envoy").read_bytes() != old_leaf
    _cert(pki.cert("envoy")).verify_directly_issued_by(_cert(pki.ca))


@pytest.mark.unit
def test_settings_refuse_plaintext_in_prod_without_a_sidecar_mesh() -> None:
    with pytest.raises(ValidationError, match="sidecar_mtls"):
        PlatformSettings(env="prod", plaintext=True, database_url="postgresql://u:p@db/x")
    ok = PlatformSettings(env="prod", plaintext=True, sidecar_mtls=True,
                          database_url="postgresql://u:p@db/x")
    assert ok.plaintext and tls.server_credentials_for(ok) is None


@pytest.mark.unit
def test_tls_without_files_names_the_missing_ones() -> None:
    with pytest.raises(ValueError, match="tls_cert_file, tls_key_file, tls_ca_file"):
        tls.server_credentials_for(PlatformSettings(env="test"))


# ---------------------------------------------------------------- real handshakes


def _mtls_settings(pki: tls.DevPki, name: str) -> PlatformSettings:
    return settings_for_tests(plaintext=False, tls_cert_file=pki.cert(name),
                              tls_key_file=pki.key(name), tls_ca_file=pki.ca)


async def _health(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(reply.status)


@pytest.mark.integration
async def test_service_requires_a_client_certificate_from_the_ca(tmp_path: Path) -> None:
    pki = tls.ensure_dev_pki(tmp_path / "tls", {**LEAVES, "backtest": ("backtest",)})
    other = tls.ensure_dev_pki(tmp_path / "other", {"backtest": ("backtest",)})
    server = await start_in_process(["usdcarb.v1.StrategyService"], lambda s: None,
                                    settings=_mtls_settings(pki, "strategy"))
    async with server:
        # The calling service's own certificate, the peer checked by its short name.
        async with tls.peer_channel(_mtls_settings(pki, "backtest"), server.address,
                                    "strategy") as channel:
            assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING

        refused = [
            grpc.aio.insecure_channel(server.address),  # plaintext
            grpc.aio.secure_channel(server.address, tls.channel_credentials(pki.ca)),  # no cert
            grpc.aio.secure_channel(server.address, tls.channel_credentials(  # another CA
                pki.ca, other.cert("backtest"), other.key("backtest"))),
            # The right CA, but the peer is not the service asked for.
            tls.peer_channel(_mtls_settings(pki, "backtest"), server.address, "identity"),
        ]
        for channel in refused:
            async with channel:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await _health(channel)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.integration
async def test_https_client_context_checks_the_localhost_certificate(tmp_path: Path) -> None:
    pki = tls.ensure_dev_pki(tmp_path / "tls", LEAVES)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pki.cert("gateway"), pki.key("gateway"))

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    async with server:
        for host in ("localhost", "127.0.0.1"):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=tls.ssl_context(pki.ca), server_hostname=host)
            assert await reader.read() == b"ok"
            writer.close()
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection("127.0.0.1", port, ssl=tls.ssl_context(pki.ca),
                                          server_hostname="strategy")
        with pytest.raises(ssl.SSLCertVerificationError):  # the system CAs do not know it
            await asyncio.open_connection("127.0.0.1", port, ssl=ssl.create_default_context(),
                                          server_hostname="localhost")
