"""Mint access tokens signed with the committed DEV-ONLY key: LOCAL DEVELOPMENT ONLY.

Real tokens come from the identity service (Login, RefreshToken, ExchangeApiKey). This
shortcut survives for local development and tests only: the private key sits in the
repository (gateway/dev-keys/), so anyone can mint with it. It works only where the
DEV-ONLY public key is trusted, which is nowhere in prod:

- the function and the command refuse to run unless ``USDCARB_ENV`` is dev or test;
- the gateway refuses the DEV-ONLY JWKS file when rendered for prod;
- identity publishes the DEV-ONLY key in its JWKS only with ``publish_dev_key`` (default
  on), which its settings refuse when ``env=prod``.

    USDCARB_ENV=dev python -m usdcarb.gateway.devtoken --role analyst --sub alice
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from usdcarb.gateway.config import DEFAULT_AUDIENCE, DEFAULT_ISSUER, REPO_ROOT

__all__ = ["DEV_PRIVATE_KEY", "DevTokenRefused", "mint_dev_token"]

DEV_KEYS = REPO_ROOT / "gateway" / "dev-keys"
DEV_PRIVATE_KEY = DEV_KEYS / "DEV-ONLY-es256-private.pem"
DEV_JWKS = DEV_KEYS / "DEV-ONLY-jwks.json"
ALLOWED_ENVS = ("dev", "test")
ROLES = ("viewer", "analyst", "trader", "admin")


class DevTokenRefused(RuntimeError):
    """Signal that development tokens were requested outside dev or test."""


def _require_dev_env() -> None:
    env = os.environ.get("USDCARB_ENV", "dev")
    if env not in ALLOWED_ENVS:
        raise DevTokenRefused(
            f"expected USDCARB_ENV in {ALLOWED_ENVS} to mint a DEV-ONLY token, got {env!r}"
        )


def _b64url_int(value: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode()


def _kid_for(key: ec.EllipticCurvePrivateKey, jwks_path: Path) -> str:
    """Return the ``kid`` of the JWKS entry holding the public half of ``key``."""
    numbers = key.public_key().public_numbers()
    x, y = _b64url_int(numbers.x), _b64url_int(numbers.y)
    for jwk in json.loads(jwks_path.read_text())["keys"]:
        if jwk.get("x") == x and jwk.get("y") == y:
            return str(jwk["kid"])
    raise ValueError(f"expected the public key of the signing key in {jwks_path}, got no match")


def mint_dev_token(
    subject: str,
    roles: Sequence[str],
    ttl: float = 3600,
    issuer: str = DEFAULT_ISSUER,
    audience: str = DEFAULT_AUDIENCE,
    key_path: Path = DEV_PRIVATE_KEY,
    *,
    jwks_path: Path | None = None,
    kid: str | None = None,
    now: float | None = None,
) -> str:
    """Return an ES256 JWT for ``subject`` with ``roles``, valid ``ttl`` seconds from ``now``.

    The ``kid`` header is looked up in the JWKS beside the key (``DEV-ONLY-jwks.json``)
    unless given. Raise DevTokenRefused outside USDCARB_ENV dev/test.
    """
    _require_dev_env()
    key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"expected an EC private key in {key_path}, got {type(key).__name__}")
    if kid is None:
        kid = _kid_for(key, jwks_path or Path(key_path).with_name("DEV-ONLY-jwks.json"))
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl),
        "jti": uuid.uuid4().hex,
        "roles": list(roles),
    }
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})


def main(argv: Sequence[str] | None = None) -> int:
    """Print a development token; refuse outside USDCARB_ENV dev/test."""
    p = argparse.ArgumentParser(
        prog="python -m usdcarb.gateway.devtoken", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--role", action="append", choices=ROLES, required=True, help="repeatable")
    p.add_argument("--sub", default="dev-user", help="subject (user id)")
    p.add_argument("--ttl", type=int, default=3600, help="seconds until expiry")
    p.add_argument("--issuer", default=DEFAULT_ISSUER)
    p.add_argument("--audience", default=DEFAULT_AUDIENCE)
    p.add_argument("--key", type=Path, default=DEV_PRIVATE_KEY)
    args = p.parse_args(argv)
    try:
        token = mint_dev_token(args.sub, args.role, args.ttl, args.issuer, args.audience, args.key)
    except DevTokenRefused as exc:
        sys.stderr.write(f"devtoken: {exc}\n")
        return 2
    sys.stdout.write(token + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
