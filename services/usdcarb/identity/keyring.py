"""The signing keys of one replica: loaded from the database, rotated on schedule.

Every replica reloads the keys every ``key_refresh_s`` and signs with the newest active
one, so replicas and restarts share keys. A rotation inserts a key that is published
``lead`` before it signs (every gateway's cached JWKS learns it first) and keeps the
previous key published for the access-token lifetime after that (tokens it signed stay
valid): no request fails because of a rotation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from usdcarb.identity import domain, keys
from usdcarb.identity.model import SigningKeyRecord
from usdcarb.identity.store import IdentityStore
from usdcarb.platform.errors import Unavailable

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _state(record: SigningKeyRecord) -> domain.KeyState:
    return domain.KeyState(kid=record.kid, activate_time=record.activate_time,
                           retire_time=record.retire_time)


class KeyRing:
    """Sign access tokens and publish the JWKS from the keys in the database."""

    def __init__(
        self, store: IdentityStore, passphrase: bytes, *, rotate_every: timedelta,
        lead: timedelta, overlap: timedelta, extra_jwks: list[dict[str, str]] | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self._store = store
        self._passphrase = passphrase
        self.rotate_every = rotate_every
        self.lead = lead
        self.overlap = overlap
        self._extra = list(extra_jwks or [])
        self._clock = clock
        self._records: list[SigningKeyRecord] = []
        self._private: dict[str, ec.EllipticCurvePrivateKey] = {}

    async def reload(self) -> None:
        """Read the keys from the database (decrypting lazily, once per key)."""
        self._records = await self._store.list_signing_keys()

    async def start(self) -> None:
        """Load the keys and make sure one can sign now (the first start creates it)."""
        await self.reload()
        now = self._clock()
        if domain.signing_key([_state(r) for r in self._records], now) is None:
            await self.rotate(lead=timedelta(0), only_if_due=False)

    async def rotate(self, *, lead: timedelta | None = None, only_if_due: bool = True) -> str | None:
        """Add a new key (under a cross-replica lock); return its kid, or None if not due."""
        async with self._store.transaction() as conn:
            await self._store.lock_rotation(conn)
            records = await self._store.list_signing_keys(conn=conn)
            states = [_state(r) for r in records]
            now = self._clock()
            if only_if_due and not domain.needs_rotation(states, now, self.rotate_every):
                self._records = records
                return None
            plan = domain.plan_rotation(states, now, lead=self.lead if lead is None else lead,
                                        overlap=self.overlap)
            new = keys.generate_key(self._passphrase, now)
            await self._store.insert_signing_key(conn, SigningKeyRecord(
                kid=new.kid, private_pem=new.private_pem, public_jwk=new.jwk,
                activate_time=plan.activate_time))
            for kid, at in plan.retire.items():
                await self._store.retire_signing_key(conn, kid, at)
        logger.info("signing key %s added; it signs from %s", new.kid, plan.activate_time)
        await self.reload()
        return new.kid

    async def run(self, refresh_s: float) -> None:
        """Reload keys and rotate when due, forever (cancel to stop)."""
        while True:
            await asyncio.sleep(refresh_s)
            try:
                await self.rotate()
                await self.reload()
            except Exception:
                logger.exception("signing key refresh failed; keeping the keys loaded before")

    def _key(self, record: SigningKeyRecord) -> ec.EllipticCurvePrivateKey:
        key = self._private.get(record.kid)
        if key is None:
            key = keys.load_private(record.private_pem, self._passphrase)
            self._private[record.kid] = key
        return key

    def sign(self, claims: dict[str, Any]) -> str:
        """Sign ``claims`` with the current key."""
        current = domain.signing_key([_state(r) for r in self._records], self._clock())
        if current is None:
            raise Unavailable("no signing key is active yet", retry_after=1.0)
        record = next(r for r in self._records if r.kid == current.kid)
        return keys.sign(claims, self._key(record), record.kid)

    def jwks(self) -> list[dict[str, str]]:
        """Return the published JWKs: next (during a rotation), current, previous."""
        by_kid = {r.kid: r for r in self._records}
        live = domain.published([_state(r) for r in self._records], self._clock())
        return [dict(by_kid[k.kid].public_jwk) for k in live] + self._extra

    def current_kid(self) -> str | None:
        """Return the kid that signs now."""
        current = domain.signing_key([_state(r) for r in self._records], self._clock())
        return None if current is None else current.kid


async def stop_task(task: asyncio.Task[None]) -> None:
    """Cancel a background task and wait for it."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
