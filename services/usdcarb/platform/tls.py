"""Transport security: a local development CA, certificates it issues, gRPC/HTTPS credentials.

The dev stack makes one CA under ``<stack root>/tls/`` and, from it, a certificate for the
gateway's listener (``localhost``, ``127.0.0.1``, ``::1``), one Envoy presents to the
services (mutual TLS) and one per service (its short name, e.g. ``strategy``, plus the
loopback names). ``ensure_dev_pki`` is idempotent: files that are valid, issued by the CA
on disk, carry the expected names and are not near expiry are kept; anything else is
made again. Private keys are written 0600. Everything is made with ``cryptography``.

    pki = ensure_dev_pki(root / "tls", {"gateway": LOCALHOST, "strategy": service_names("strategy")})
    creds = server_credentials(pki.cert("strategy"), pki.key("strategy"), pki.ca)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from usdcarb.platform.settings import PlatformSettings

__all__ = [
    "LOCALHOST",
    "DevPki",
    "channel_credentials",
    "ensure_dev_pki",
    "issue_certificate",
    "make_ca",
    "peer_channel",
    "server_credentials",
    "server_credentials_for",
    "service_names",
    "ssl_context",
]

LOCALHOST = ("localhost", "127.0.0.1", "::1")
CA_NAME = "usdcarb development CA (local only)"
CA_DAYS = 3650
LEAF_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)  # a certificate expiring sooner is made again

PrivateKey = ec.EllipticCurvePrivateKey


def service_names(name: str) -> tuple[str, ...]:
    """Return the SANs of a service's certificate: its short name, then the loopback names.

    Peers check the short name (Envoy's cluster, a calling service's channel), so a
    certificate of one service does not pass for another.
    """
    return (name, *LOCALHOST)


def _general_name(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)


def _names_of(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(n.value) for n in san}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_ca(common_name: str = CA_NAME, *, days: int = CA_DAYS) -> tuple[x509.Certificate, PrivateKey]:
    """Return a self-signed CA certificate (may sign leaves only, no sub-CAs) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=True, crl_sign=True, encipher_only=False,
                          decipher_only=False),
            critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue_certificate(
    ca_cert: x509.Certificate, ca_key: PrivateKey, common_name: str, names: Sequence[str], *,
    days: int = LEAF_DAYS,
) -> tuple[x509.Certificate, PrivateKey]:
    """Return a leaf certificate for ``names`` (DNS names or IP addresses) and its key.

    It serves both ends of mutual TLS (server and client authentication), as a service
    both answers calls and makes them.
    """
    if not names:
        raise ValueError(f"expected at least one name for {common_name!r}, got none")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=False, crl_sign=False, encipher_only=False,
                          decipher_only=False),
            critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                   ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


# ---------------------------------------------------------------- files


def _write(path: Path, data: bytes, mode: int) -> None:
    # Written whole under a temporary name with its final mode, then renamed: a reader
    # never sees half a key, and a key is never readable by others, even briefly.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _save(cert: x509.Certificate, key: PrivateKey, cert_path: Path, key_path: Path) -> None:
    _write(key_path, key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _load(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, PrivateKey] | None:
    """Return the certificate and key on disk, or None when missing, unreadable or unpaired."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    return cert, key


def _fresh(cert: x509.Certificate) -> bool:
    now = _now()
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - RENEW_BEFORE > now


@dataclass(frozen=True)
class DevPki:
    """Where the development CA and the certificates it issued live."""

    root: Path

    @property
    def ca(self) -> Path:
        """Return the CA certificate (PEM): what clients trust."""
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    def cert(self, name: str) -> Path:
        """Return the certificate (PEM) issued for ``name``."""
        return self.root / f"{name}.pem"

    def key(self, name: str) -> Path:
        """Return the private key (PEM, 0600) of ``name``'s certificate."""
        return self.root / f"{name}.key"


def ensure_dev_pki(root: Path, leaves: Mapping[str, Sequence[str]]) -> DevPki:
    """Make (or keep) a CA under ``root`` and one certificate per ``{name: SANs}``.

    Idempotent: a CA that is fresh and whose key matches is kept, and so is a leaf that
    the CA signed, holds exactly the requested SANs and is fresh. Return the file layout.
    """
    pki = DevPki(root)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    loaded = _load(pki.ca, pki.ca_key)
    if loaded is None or not _fresh(loaded[0]):
        loaded = make_ca()
        _save(*loaded, pki.ca, pki.ca_key)
    ca_cert, ca_key = loaded
    for name, names in leaves.items():
        leaf = _load(pki.cert(name), pki.key(name))
        if leaf is not None and _issued_by(leaf[0], ca_cert) and _fresh(leaf[0]) \
                and _names_of(leaf[0]) == {str(_general_name(n).value) for n in names}:
            continue
        _save(*issue_certificate(ca_cert, ca_key, name, names), pki.cert(name), pki.key(name))
    return pki


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


# ---------------------------------------------------------------- credentials


def server_credentials(cert_file: Path, key_file: Path, ca_file: Path, *,
                       require_client_auth: bool = True) -> grpc.ServerCredentials:
    """Return gRPC server credentials: serve ``cert_file`` and, by default, accept only
    callers presenting a certificate that chains to ``ca_file`` (mutual TLS)."""
    return grpc.ssl_server_credentials(
        [(key_file.read_bytes(), cert_file.read_bytes())],
        root_certificates=ca_file.read_bytes(),
        require_client_auth=require_client_auth,
    )


def channel_credentials(ca_file: Path, cert_file: Path | None = None,
                        key_file: Path | None = None) -> grpc.ChannelCredentials:
    """Return gRPC channel credentials trusting ``ca_file``, presenting a client
    certificate when ``cert_file`` and ``key_file`` are given."""
    if (cert_file is None) != (key_file is None):
        raise ValueError(f"expected both a client certificate and its key, got "
                         f"cert_file={cert_file}, key_file={key_file}")
    return grpc.ssl_channel_credentials(
        root_certificates=ca_file.read_bytes(),
        private_key=None if key_file is None else key_file.read_bytes(),
        certificate_chain=None if cert_file is None else cert_file.read_bytes(),
    )


def ssl_context(ca_file: Path, cert_file: Path | None = None,
                key_file: Path | None = None) -> ssl.SSLContext:
    """Return a client SSLContext (TLS 1.2+, hostname checked) trusting only ``ca_file``."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), None if key_file is None else str(key_file))
    return context


# ---------------------------------------------------------------- from a service's settings


def _files(settings: PlatformSettings) -> tuple[Path, Path, Path]:
    files = {"tls_cert_file": settings.tls_cert_file, "tls_key_file": settings.tls_key_file,
             "tls_ca_file": settings.tls_ca_file}
    missing = [name for name, path in files.items() if path is None]
    if missing:
        raise ValueError(f"expected {', '.join(missing)} for mutual TLS (or plaintext=true "
                         f"where a flag may ask for it), got none")
    cert, key, ca = files.values()
    assert cert is not None and key is not None and ca is not None
    return cert, key, ca


def server_credentials_for(settings: PlatformSettings) -> grpc.ServerCredentials | None:
    """Return the server's mutual-TLS credentials, or None when ``settings.plaintext``."""
    if settings.plaintext:
        return None
    cert, key, ca = _files(settings)
    return server_credentials(cert, key, ca)


def peer_channel(settings: PlatformSettings, address: str, peer: str,
                 options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """Open a grpc.aio channel to service ``peer`` at ``address``.

    Mutual TLS with this service's own certificate; the peer's certificate must chain to
    the CA and name ``peer`` (its short name), whatever address it is reached at.
    Plaintext only when ``settings.plaintext``.
    """
    if settings.plaintext:
        return grpc.aio.insecure_channel(address, options=list(options))
    cert, key, ca = _files(settings)
    return grpc.aio.secure_channel(
        address, channel_credentials(ca, cert, key),
        options=[("grpc.ssl_target_name_override", peer), *options])
