"""In-service token verification: signature, claims, key refetch with a floor, the cache."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from usdcarb.platform.errors import Unauthenticated
from usdcarb.platform.service_auth import (
    credential_for,
    credential_matches,
    derive_credential,
)
from usdcarb.platform.testing import settings_for_tests
from usdcarb.platform.tokens import TokenVerifier, bearer_token

pytestmark = pytest.mark.unit

ISS, AUD = "usdcarb-identity", "usdcarb-api"
NOW = 1_800_000_000.0


def _b64(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()


class Key:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = ec.generate_private_key(ec.SECP256R1())
        nums = self.private.public_key().public_numbers()
        self.jwk = {"kty": "EC", "crv": "P-256", "x": _b64(nums.x), "y": _b64(nums.y),
                    "kid": kid, "alg": "ES256", "use": "sig"}

    def token(self, **claims: Any) -> str:
        body = {"iss": ISS, "aud": AUD, "sub": "users/alice", "iat": int(NOW),
                "nbf": int(NOW), "exp": int(NOW) + 300, "roles": ["analyst"], **claims}
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, self.private, algorithm="ES256", headers={"kid": self.kid})


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Source:
    """A JWKS endpoint whose keys the test changes, counting fetches."""

    def __init__(self, *keys: Key) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.fail = False

    async def __call__(self) -> Sequence[Mapping[str, Any]]:
        self.fetches += 1
        if self.fail:
            raise ConnectionError("identity is down")
        return [k.jwk for k in self.keys]


def verifier(source: Source, clock: Clock, **kw: Any) -> TokenVerifier:
    return TokenVerifier(source, issuer=ISS, audience=AUD, leeway_s=30, clock=clock, **kw)


async def refused(v: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as raised:
        await v.verify(token)
    return raised.value.reason


async def test_valid_token_names_the_caller_and_is_cached_until_expiry() -> None:
    key, clock = Key("k1"), Clock()
    source = Source(key)
    v = verifier(source, clock)
    token = key.token()

    caller = await v.verify(token)
    assert caller.subject == "users/alice" and caller.roles == {"analyst"}
    assert await v.verify(token) is caller  # from the cache
    assert source.fetches == 1

    clock.now += 300 + 31  # past exp and the leeway
    assert await refused(v, token) == "TOKEN_EXPIRED"


@pytest.mark.parametrize(("claims", "reason"), [
    ({"exp": int(NOW) - 60}, "TOKEN_EXPIRED"),
    ({"nbf": int(NOW) + 120}, "TOKEN_NOT_YET_VALID"),
    ({"aud": "someone-else"}, "TOKEN_WRONG_AUDIENCE"),
    ({"iss": "evil-issuer"}, "TOKEN_WRONG_ISSUER"),
    ({"exp": None}, "TOKEN_INVALID"),
    ({"sub": ""}, "TOKEN_INVALID"),
])
async def test_bad_claims_are_refused(claims: dict[str, Any], reason: str) -> None:
    key = Key("k1")
    assert await refused(verifier(Source(key), Clock()), key.token(**claims)) == reason


async def test_token_signed_by_another_key_under_a_known_kid_is_refused() -> None:
    published, forger = Key("k1"), Key("k1")
    v = verifier(Source(published), Clock())
    assert await refused(v, forger.token(roles=["admin"])) == "TOKEN_INVALID"


@pytest.mark.parametrize("alg", ["HS256", "none"])
async def test_other_algorithms_are_refused(alg: str) -> None:
    key = Key("k1")
    body = {"iss": ISS, "aud": AUD, "sub": "users/x", "iat": int(NOW), "exp": int(NOW) + 60}
    token = jwt.encode(body, "s" * 32 if alg == "HS256" else None, algorithm=alg,
                       headers={"kid": "k1"})
    assert await refused(verifier(Source(key), Clock()), token) == "TOKEN_INVALID"


async def test_garbage_is_refused() -> None:
    assert await refused(verifier(Source(Key("k1")), Clock()), "not.a.jwt") == "TOKEN_INVALID"
    forged_claims = base64.urlsafe_b64encode(json.dumps({"sub": "users/m"}).encode()).decode()
    assert await refused(verifier(Source(Key("k1")), Clock()), forged_claims) == "TOKEN_INVALID"


async def test_unknown_kid_refetches_once_per_floor_then_finds_a_rotated_key() -> None:
    old, new, clock = Key("old"), Key("new"), Clock()
    source = Source(old)
    v = verifier(source, clock, refetch_floor_s=5)
    await v.verify(old.token())
    assert source.fetches == 1

    # Within the floor of the last fetch an unknown kid fetches nothing.
    assert await refused(v, Key("forged0").token()) == "UNKNOWN_SIGNING_KEY"
    assert source.fetches == 1
    # After it, a forged kid makes one refetch, then none until the floor passes again.
    clock.now += 5
    assert await refused(v, Key("forged").token()) == "UNKNOWN_SIGNING_KEY"
    assert source.fetches == 2
    assert await refused(v, Key("forged2").token()) == "UNKNOWN_SIGNING_KEY"
    assert source.fetches == 2

    # Identity rotated: the new kid is fetched once the floor has passed.
    source.keys.append(new)
    clock.now += 5
    assert (await v.verify(new.token())).subject == "users/alice"
    assert source.fetches == 3


async def test_keys_are_refreshed_after_max_age_and_kept_when_identity_is_down() -> None:
    key, clock = Key("k1"), Clock()
    source = Source(key)
    v = verifier(source, clock, max_age_s=60)
    await v.verify(key.token(jti="a"))
    source.fail = True
    clock.now += 61
    # The refresh fails; the keys loaded before still verify.
    assert (await v.verify(key.token(jti="b", iat=int(clock.now), exp=int(clock.now) + 60)))
    assert source.fetches == 2


async def test_no_keys_at_all_is_unauthenticated_not_a_crash() -> None:
    source = Source(Key("k1"))
    source.fail = True
    assert await refused(verifier(source, Clock()), Key("k1").token()) == "KEYS_UNAVAILABLE"


async def test_cache_is_bounded() -> None:
    key, clock = Key("k1"), Clock()
    v = verifier(Source(key), clock, cache_size=3)
    for i in range(10):
        await v.verify(key.token(jti=str(i)))
    assert len(v._cache) == 3


def test_bearer_header_parsing() -> None:
    assert bearer_token([("x-request-id", "1")]) is None
    assert bearer_token([("authorization", "Bearer abc")]) == "abc"
    assert bearer_token([("authorization", b"bearer abc")]) == "abc"
    for bad in ([("authorization", "Basic abc")], [("authorization", "Bearer ")],
                [("authorization", "Bearer a"), ("authorization", "Bearer b")]):
        with pytest.raises(Unauthenticated):
            bearer_token(bad)


def test_service_credentials_derive_from_the_key_and_differ_per_service() -> None:
    a = derive_credential("k", "backtest")
    assert credential_matches("k", "backtest", a)
    assert not credential_matches("k", "ingestion", a)
    assert not credential_matches("other", "backtest", a)
    assert credential_for(settings_for_tests(), "backtest") == derive_credential(
        "DEV-ONLY-usdcarb-service-credential-key", "backtest")
    with pytest.raises(ValueError, match="service_credential"):
        credential_for(settings_for_tests().model_copy(update={"env": "prod"}), "backtest")
