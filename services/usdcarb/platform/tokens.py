"""Verify bearer tokens inside every service: ES256 against identity's JWKS, cached.

Zero trust inside the mesh: Envoy validates tokens at the edge and forwards the original
``authorization`` header; each service verifies it again here before any handler runs
and never trusts a claims header on its own. A verified token is cached by its SHA-256
until it expires, so a caller reusing its token pays one dictionary lookup per call.

Keys come from a ``KeySource`` (identity's ``GetJwks`` over gRPC, identity's own key
ring, or a JWKS file). They are fetched once, refreshed after ``max_age_s``, and fetched
again when a token names an unknown ``kid`` (a rotation), at most once per
``refetch_floor_s`` so a stream of forged kids cannot hammer identity.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

import jwt

from usdcarb.platform.errors import Unauthenticated
from usdcarb.platform.identity import Caller, caller_from_claims

logger = logging.getLogger(__name__)

ALGORITHM = "ES256"
BEARER = "bearer "
_REQUIRED_CLAIMS = ("exp", "iat", "sub", "iss", "aud")

Clock = Callable[[], float]


class KeySource(Protocol):
    """Where verification keys come from: return the current JWKs (dicts, RFC 7517)."""

    def __call__(self) -> Awaitable[Sequence[Mapping[str, Any]]]: ...


def file_keys(path: Path) -> KeySource:
    """Return a source reading a JWKS file (``{"keys": [...]}``) on every fetch."""
    async def fetch() -> Sequence[Mapping[str, Any]]:
        keys = json.loads(await asyncio.to_thread(path.read_text))["keys"]
        return list(keys)
    return fetch


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """Return the token of the one ``authorization: Bearer`` header, None without one.

    Raise Unauthenticated for several authorization headers or another scheme.
    """
    values = [v for k, v in metadata or () if k.lower() == "authorization"]
    if not values:
        return None
    if len(values) > 1:
        raise Unauthenticated("expected one authorization header, got several",
                              reason="TOKEN_INVALID")
    value = values[0].decode("latin-1") if isinstance(values[0], bytes) else values[0]
    if not value[: len(BEARER)].lower() == BEARER or not value[len(BEARER):].strip():
        raise Unauthenticated("expected an authorization header 'Bearer <token>'",
                              reason="TOKEN_INVALID")
    return value[len(BEARER):].strip()


class TokenVerifier:
    """Verify access tokens (signature, iss, aud, exp, nbf) and cache the result."""

    def __init__(
        self, source: KeySource, *, issuer: str, audience: str, leeway_s: float = 30.0,
        max_age_s: float = 300.0, refetch_floor_s: float = 5.0, cache_size: int = 10_000,
        clock: Clock = time.time,
    ) -> None:
        self._source = source
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self.max_age_s = max_age_s
        self.refetch_floor_s = refetch_floor_s
        self.cache_size = cache_size
        self._clock = clock
        self._keys: Mapping[str, Any] = MappingProxyType({})
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self._cache: OrderedDict[bytes, tuple[float, Caller]] = OrderedDict()

    # ------------------------------------------------------------------ keys
    async def _refresh(self, *, forced: bool) -> None:
        async with self._lock:
            now = self._clock()
            if self._fetched_at is not None:
                age = now - self._fetched_at
                # Another waiter refreshed meanwhile, or the floor holds a forced refetch.
                if age < (self.refetch_floor_s if forced else self.max_age_s):
                    return
            try:
                jwks = await self._source()
            except Exception as exc:
                if not self._keys:
                    raise Unauthenticated(
                        "cannot verify tokens yet: the signing keys are unavailable",
                        reason="KEYS_UNAVAILABLE") from exc
                logger.warning("JWKS refresh failed, keeping %d keys: %s", len(self._keys), exc)
                self._fetched_at = now  # retry after the floor/max age, not on every call
                return
            keys: dict[str, Any] = {}
            for jwk in jwks:
                try:
                    keys[str(jwk["kid"])] = jwt.PyJWK(dict(jwk), algorithm=ALGORITHM).key
                except (KeyError, jwt.PyJWKError) as exc:
                    logger.warning("ignoring an unusable JWK %r: %s", jwk.get("kid"), exc)
            self._keys = MappingProxyType(keys)
            self._fetched_at = now
            logger.info("loaded %d verification keys", len(keys))

    async def _key(self, kid: str) -> Any:
        if self._fetched_at is None or self._clock() - self._fetched_at >= self.max_age_s:
            await self._refresh(forced=False)
        key = self._keys.get(kid)
        if key is None:
            await self._refresh(forced=True)
            key = self._keys.get(kid)
        if key is None:
            raise Unauthenticated(f"expected a token signed by a published key, got kid {kid!r}",
                                  reason="UNKNOWN_SIGNING_KEY")
        return key

    # ------------------------------------------------------------------ tokens
    async def verify(self, token: str) -> Caller:
        """Return the caller a valid token names; raise Unauthenticated otherwise."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        now = self._clock()
        hit = self._cache.get(digest)
        if hit is not None:
            expires, caller = hit
            if now < expires + self.leeway_s:
                return caller
            del self._cache[digest]
        caller, expires = await self._verify(token, now)
        self._cache[digest] = (expires, caller)
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)  # the oldest entry: tokens live minutes
        return caller

    async def _verify(self, token: str, now: float) -> tuple[Caller, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("expected a JWT, got a malformed token",
                                  reason="TOKEN_INVALID") from None
        if header.get("alg") != ALGORITHM:
            raise Unauthenticated(f"expected alg {ALGORITHM}, got {header.get('alg')!r}",
                                  reason="TOKEN_INVALID")
        key = await self._key(str(header.get("kid", "")))
        try:
            # Times are checked below against this verifier's clock (the cache uses it too).
            claims = jwt.decode(
                token, key, algorithms=[ALGORITHM], audience=self.audience, issuer=self.issuer,
                options={"require": list(_REQUIRED_CLAIMS), "verify_exp": False,
                         "verify_nbf": False, "verify_iat": False})
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"expected a token for audience {self.audience!r}",
                                  reason="TOKEN_WRONG_AUDIENCE") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(f"expected a token issued by {self.issuer!r}",
                                  reason="TOKEN_WRONG_ISSUER") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"expected a valid token, got one that fails: {exc}",
                                  reason="TOKEN_INVALID") from None
        exp, nbf = claims["exp"], claims.get("nbf", claims["iat"])
        if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in (exp, nbf)):
            raise Unauthenticated("expected numeric exp, iat and nbf claims",
                                  reason="TOKEN_INVALID")
        if now > exp + self.leeway_s:
            raise Unauthenticated("expected an unexpired token, got an expired one",
                                  reason="TOKEN_EXPIRED")
        if now < nbf - self.leeway_s:
            raise Unauthenticated("expected a token valid now, got one not valid yet (nbf)",
                                  reason="TOKEN_NOT_YET_VALID")
        caller = caller_from_claims(claims)
        if not caller.authenticated:
            raise Unauthenticated("expected a token with a subject", reason="TOKEN_INVALID")
        return caller, float(claims["exp"])
