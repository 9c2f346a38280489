"""Crypto of the identity service: argon2 passwords, ES256 signing keys, JWT signing.

Private signing keys are stored PKCS#8-encrypted (AES-256-CBC, scrypt-derived key) with
the passphrase from settings, so the database alone does not give away the keys.
Argon2 is CPU-heavy on purpose: callers run it off the event loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ALGORITHM = "ES256"

# A hash of a random password: verifying against it when the user does not exist makes
# an unknown username cost as much time as a wrong password (no user enumeration).
_DUMMY_PASSWORD = secrets.token_urlsafe(16)


class Passwords:
    """Hash and verify passwords with argon2id (argon2-cffi's RFC 9106 low-memory profile)."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy = self._hasher.hash(_DUMMY_PASSWORD)

    def hash(self, password: str) -> str:
        """Return the argon2id hash of ``password``."""
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """Tell whether ``password`` matches ``stored`` (None: unknown user, same cost)."""
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        """Tell whether ``stored`` was hashed with weaker parameters than today's."""
        return self._hasher.check_needs_rehash(stored)


def _b64url_int(value: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode()


def public_jwk(key: ec.EllipticCurvePublicKey, kid: str) -> dict[str, str]:
    """Return the JWK of an EC P-256 public key."""
    numbers = key.public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": _b64url_int(numbers.x),
            "y": _b64url_int(numbers.y), "kid": kid, "alg": ALGORITHM, "use": "sig"}


@dataclass(frozen=True)
class NewKey:
    """A freshly generated signing key, ready to store."""

    kid: str
    private_pem: str  # encrypted PKCS#8
    jwk: dict[str, str]


def generate_key(passphrase: bytes, now: dt.datetime) -> NewKey:
    """Generate an ES256 key with a fresh kid, its private half encrypted."""
    private = ec.generate_private_key(ec.SECP256R1())
    kid = f"{now:%Y%m%d}-{secrets.token_hex(4)}"
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    ).decode()
    return NewKey(kid, pem, public_jwk(private.public_key(), kid))


def load_private(pem: str, passphrase: bytes) -> ec.EllipticCurvePrivateKey:
    """Decrypt a stored private key."""
    key = serialization.load_pem_private_key(pem.encode(), password=passphrase)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"expected an EC private key, got {type(key).__name__}")
    return key


def sign(claims: dict[str, Any], key: ec.EllipticCurvePrivateKey, kid: str) -> str:
    """Return the compact ES256 JWT of ``claims`` with ``kid`` in its header."""
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})


def read_jwks(path: Path) -> list[dict[str, str]]:
    """Return the keys of a JWKS file."""
    keys: list[dict[str, str]] = json.loads(path.read_text())["keys"]
    return keys
