"""The gateway over TLS: HTTPS (h2 and http/1.1 by ALPN) at the listener, mutual TLS to
backends that check Envoy's client certificate, the JWKS fetched through its own HTTPS
listener; a backend whose certificate Envoy cannot verify gets no traffic."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from gateway.conftest import (
    DESCRIPTOR,
    EnvoyProcess,
    FakeBackend,
    fake_upstreams,
    free_port,
    gateway_config,
    start_envoy,
)
from usdcarb.gateway.config import GatewayConfig, GatewayTls, render_envoy_config
from usdcarb.gateway.devtoken import mint_dev_token
from usdcarb.platform import tls
from usdcarb.v1 import strategy_pb2, strategy_pb2_grpc

pytestmark = pytest.mark.integration

BACKENDS = ("ingestion", "validation", "strategy", "backtest", "notification", "identity")
TLS_SOCKET = "envoy.transport_sockets.tls"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tls.DevPki:
    # The fake backend serves every service on one port, so its certificate names them all.
    return tls.ensure_dev_pki(tmp_path_factory.mktemp("pki") / "tls", {
        "gateway": tls.LOCALHOST, "envoy": ("envoy",), "backend": (*BACKENDS, *tls.LOCALHOST)})


@pytest.fixture(scope="module")
def mtls_backend(pki: tls.DevPki) -> Iterator[FakeBackend]:
    served = FakeBackend(tls.server_credentials(pki.cert("backend"), pki.key("backend"),
                                                pki.ca)).start()
    try:
        yield served
    finally:
        served.stop()


def _tls_config(backend: FakeBackend, files: GatewayTls, ca: Path) -> GatewayConfig:
    port = free_port()
    return gateway_config(
        backend, listen_port=port, tls=files, jwks_mode="remote", jwks_cache_duration_s=2,
        jwks_uri=f"https://localhost:{port}/.well-known/jwks.json", jwks_ca_file=ca)


@pytest.fixture(scope="module")
def https_gateway(envoy_bin: str, mtls_backend: FakeBackend,
                  pki: tls.DevPki) -> Iterator[EnvoyProcess]:
    envoy = start_envoy(_tls_config(mtls_backend, GatewayTls.from_dir(pki.root), pki.ca),
                        envoy_bin)
    try:
        envoy.wait_ready(["strategy", "identity"])
        yield envoy
    finally:
        envoy.stop()


def test_tls_bootstrap_serves_https_and_reaches_every_backend_over_mtls(
        tmp_path: Path) -> None:
    files = GatewayTls.from_dir(tmp_path)
    cfg = GatewayConfig(descriptor_path=DESCRIPTOR, tls=files, ratelimit_address="127.0.0.1:1")
    boot = render_envoy_config(cfg)
    chain = boot["static_resources"]["listeners"][0]["filter_chains"][0]
    listener = chain["transport_socket"]["typed_config"]["common_tls_context"]
    assert listener["alpn_protocols"] == ["h2", "http/1.1"]
    assert listener["tls_params"]["tls_minimum_protocol_version"] == "TLSv1_2"
    clusters = {c["name"]: c for c in boot["static_resources"]["clusters"]}
    for name in (*BACKENDS, "ratelimit"):
        socket_ = clusters[name]["transport_socket"]
        assert socket_["name"] == TLS_SOCKET
        context = socket_["typed_config"]["common_tls_context"]
        assert socket_["typed_config"]["sni"] == name
        assert context["tls_certificates"][0]["certificate_chain"]["filename"] == str(
            tmp_path / "envoy.pem")
        assert context["validation_context"]["trusted_ca"]["filename"] == str(tmp_path / "ca.pem")
        assert context["validation_context"]["match_typed_subject_alt_names"] == [
            {"san_type": "DNS", "matcher": {"exact": name}}]
    # Behind a sidecar mesh: HTTPS at the edge, the sidecars encrypt the hop to services.
    meshed = render_envoy_config(GatewayConfig(
        descriptor_path=DESCRIPTOR, tls=GatewayTls.from_dir(tmp_path, upstream_mtls=False)))
    assert "transport_socket" in meshed["static_resources"]["listeners"][0]["filter_chains"][0]
    assert not any("transport_socket" in c for c in meshed["static_resources"]["clusters"])
    plain = render_envoy_config(GatewayConfig(descriptor_path=DESCRIPTOR))
    assert "transport_socket" not in plain["static_resources"]["listeners"][0]["filter_chains"][0]


def _https(envoy: EnvoyProcess, pki: tls.DevPki, path: str,
           headers: dict[str, str]) -> tuple[int, Any]:
    conn = http.client.HTTPSConnection("localhost", envoy.config.listen_port, timeout=10,
                                       context=tls.ssl_context(pki.ca))
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def test_rest_and_grpc_over_https_reach_an_mtls_backend_with_the_jwks_fetched_over_tls(
        https_gateway: EnvoyProcess, pki: tls.DevPki, mtls_backend: FakeBackend) -> None:
    token = mint_dev_token("users/tls", ["viewer"])
    auth = {"authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 15  # the first JWKS fetch goes through this listener
    while True:
        status, body = _https(https_gateway, pki, "/v1/strategies/s1", auth)
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 200, body
    assert body["name"] == "strategies/s1" and body["creator"] == "users/tls"
    assert "cluster.jwks.upstream_rq_200" in https_gateway.admin("/stats?filter=jwks.upstream_rq")

    credentials = tls.channel_credentials(pki.ca)
    with grpc.secure_channel(f"localhost:{https_gateway.config.listen_port}",
                             credentials) as channel:
        got = strategy_pb2_grpc.StrategyServiceStub(channel).GetStrategy(
            strategy_pb2.GetStrategyRequest(name="strategies/s2"), metadata=tuple(auth.items()),
            timeout=10)
    assert got.name == "strategies/s2"

    # Plaintext to the HTTPS port: no answer.
    plain = http.client.HTTPConnection("127.0.0.1", https_gateway.config.listen_port, timeout=5)
    with pytest.raises((http.client.HTTPException, OSError)):
        plain.request("GET", "/v1/strategies/s1", headers=auth)
        plain.getresponse()
    plain.close()
    for alpn in ("h2", "http/1.1"):
        context = tls.ssl_context(pki.ca)
        context.set_alpn_protocols([alpn])
        with socket.create_connection(("127.0.0.1", https_gateway.config.listen_port), 5) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as conn:
            assert conn.selected_alpn_protocol() == alpn


def test_a_backend_envoy_cannot_verify_gets_no_traffic(
        envoy_bin: str, mtls_backend: FakeBackend, pki: tls.DevPki, tmp_path: Path) -> None:
    # The gateway trusts another CA: the backend's certificate fails verification, its
    # health checks fail, and callers get 503 instead of talking to an unverified peer.
    other = tls.ensure_dev_pki(tmp_path / "other", {"envoy": ("envoy",)})
    files = GatewayTls(ca_file=other.ca, cert_file=pki.cert("gateway"),
                       key_file=pki.key("gateway"), client_cert_file=other.cert("envoy"),
                       client_key_file=other.key("envoy"))
    cfg = gateway_config(mtls_backend, tls=files,
                         upstreams=fake_upstreams(mtls_backend))
    envoy = start_envoy(cfg, envoy_bin)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if envoy.admin("/ready").strip() == "LIVE":
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, envoy.logs()
            time.sleep(0.1)
        token = mint_dev_token("users/tls", ["viewer"])
        calls = len(mtls_backend.recorder.calls)
        status, _ = _https(envoy, pki, "/v1/strategies/s1", {"authorization": f"Bearer {token}"})
        assert status == 503
        assert len(mtls_backend.recorder.calls) == calls
        stats = envoy.admin("/stats?filter=strategy.ssl.fail_verify")
        assert "cluster.strategy.ssl.fail_verify_error: 0" not in stats, stats
        assert "cluster.strategy.ssl.fail_verify_error" in stats, stats
    finally:
        envoy.stop()
