"""The validation port: every batch of pages is judged by the validation service's rules
before it is stored — in this process by default (``InProcessValidator``), or over gRPC.

Contract of ``CandleValidator.validate(exchange, symbol, timeframe, bars)``: return a
``Verdict`` with one accepted flag per input bar and, for each rejected bar, its rules and
"expected X, got Y" reason; the remote implementation asks the service to record its
findings and quarantine (``record=true``). Raise ``ValidationUnavailable`` on a transient
failure (the worker retries the page).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import grpc
import numpy as np

from usdcarb.ingestion.domain import Bars, Rejection, Verdict
from usdcarb.platform import db
from usdcarb.platform.errors import DomainError
from usdcarb.platform.service_auth import ServiceCredentialRefused, TokenSource, call_as_service
from usdcarb.v1 import common_pb2, validation_pb2, validation_pb2_grpc
from usdcarb.validation import model as vseries
from usdcarb.validation.domain import model as vmodel
from usdcarb.validation.domain import validate as vvalidate

logger = logging.getLogger(__name__)

_ERROR = common_pb2.SEVERITY_ERROR


class ValidationUnavailable(Exception):
    """The validation service did not answer; retry later."""


class CandleValidator(Protocol):
    # Whether the validator records findings and gaps itself (and announces them as
    # events): then ingestion must not announce the same gaps again (one event per fact).
    @property
    def records_findings(self) -> bool: ...

    async def validate(self, exchange: str, symbol: str, timeframe: str,
                       bars: Bars) -> Verdict: ...

    async def close(self) -> None: ...


class AcceptAll:
    """No remote validation: the worker's own per-bar sanity rules are the only gate."""

    records_findings = False

    async def validate(self, exchange: str, symbol: str, timeframe: str,
                       bars: Bars) -> Verdict:
        return Verdict(np.ones(len(bars), bool), ())

    async def close(self) -> None:
        return None


class RemoteValidator:
    """usdcarb.v1.ValidationService.ValidateCandles(record=true) over gRPC.

    While the service answers UNIMPLEMENTED (not deployed yet), it degrades to
    ``AcceptAll`` with a warning, so the worker's own sanity rules still guard the table.
    """

    def __init__(self, channel: grpc.aio.Channel, token: TokenSource,
                 timeout_s: float = 30.0) -> None:
        # The caller opens the channel (mutual TLS: usdcarb.platform.tls.peer_channel).
        self._token = token
        self._channel = channel
        self._stub = validation_pb2_grpc.ValidationServiceStub(  # type: ignore[no-untyped-call]
            self._channel)
        self._timeout = timeout_s
        self.unimplemented = False

    @property
    def records_findings(self) -> bool:
        """The service records findings and gaps (record=true) unless it is not deployed."""
        return not self.unimplemented

    async def close(self) -> None:
        await self._channel.close()
        await self._token.close()

    async def validate(self, exchange: str, symbol: str, timeframe: str,
                       bars: Bars) -> Verdict:
        if self.unimplemented or not len(bars):
            return Verdict(np.ones(len(bars), bool), ())
        # Columns as little-endian bytes (COLUMN_LAYOUT_LE_BYTES): a batch of many pages
        # encodes and decodes as six buffers instead of 6 x N repeated values.
        batch = common_pb2.CandleBatch(
            series=common_pb2.SeriesKey(exchange=exchange, symbol=symbol, timeframe=timeframe),
            columns=common_pb2.CandleColumns(
                open_time_ms=bars.ts_ms.astype("<i8").tobytes(),
                open=bars.open.astype("<f8").tobytes(), high=bars.high.astype("<f8").tobytes(),
                low=bars.low.astype("<f8").tobytes(), close=bars.close.astype("<f8").tobytes(),
                volume=bars.volume.astype("<f8").tobytes()),
            count=len(bars))
        try:
            resp: Any = await call_as_service(
                self._token, self._stub.ValidateCandles,
                validation_pb2.ValidateCandlesRequest(batch=batch, record=True),
                timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                logger.warning("validation service answers UNIMPLEMENTED; storing pages "
                               "checked by ingestion's own per-bar rules only")
                self.unimplemented = True
                return Verdict(np.ones(len(bars), bool), ())
            raise ValidationUnavailable(f"{exc.code().name}: {exc.details()}") from exc
        except (DomainError, ServiceCredentialRefused) as exc:  # no service token: retry later
            raise ValidationUnavailable(f"no service token from identity: {exc}") from exc
        if len(resp.accepted) != len(bars):
            raise ValidationUnavailable(
                f"expected {len(bars)} accepted flags, got {len(resp.accepted)}")
        accepted = np.fromiter(resp.accepted, dtype=bool, count=len(resp.accepted))
        by_index: dict[int, list[Any]] = {}
        for f in resp.findings:
            if f.severity == _ERROR and 0 <= f.index < len(bars):
                by_index.setdefault(int(f.index), []).append(f)
        rejections = tuple(
            Rejection(i, tuple(f.rule for f in by_index.get(i, [])) or ("validation",),
                      by_index[i][0].message if i in by_index else "rejected by validation")
            for i in np.flatnonzero(~accepted).tolist())
        return Verdict(accepted, rejections)

    async def validate_range(self, exchange: str, symbol: str, timeframe: str,
                             start_ms: int, end_ms: int) -> int:
        """ValidateRange over stored bars [start_ms, end_ms): the service runs every rule
        and records the findings, the gaps and the series verdicts; return the bars it
        checked."""
        rng = common_pb2.TimeRange()
        rng.start_time.FromMilliseconds(start_ms)
        rng.end_time.FromMilliseconds(end_ms)
        try:
            resp: Any = await call_as_service(
                self._token, self._stub.ValidateRange, validation_pb2.ValidateRangeRequest(
                    series=common_pb2.SeriesKey(exchange=exchange, symbol=symbol,
                                                timeframe=timeframe), range=rng),
                timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise ValidationUnavailable(f"{exc.code().name}: {exc.details()}") from exc
        except (DomainError, ServiceCredentialRefused) as exc:
            raise ValidationUnavailable(f"no service token from identity: {exc}") from exc
        return int(resp.bars_checked)


class InProcessValidator:
    """The validation service's own application run in this process (the default).

    Design (issue 17): the validation service stays the owner of the rules, the
    quarantine, the gaps and the series verdicts — its schema, its migrations, its code.
    Ingestion imports that code (``usdcarb.validation.main.make_app``, the very
    ``ValidationApp`` the service serves ValidateCandles with, on a pool of the validation
    schema) and calls ``validate_candles(record=True)`` per batch as the service would:
    the same rules, findings and quarantine recorded the same way in one transaction, the
    same per-batch gap repair by the series' policy and the same verdict refresh before
    ingestion commits the batch. Only the round trip goes: no protobuf encoding of the
    columns and the flags, no second process reading the context. The service still
    answers ValidateCandles/ValidateRange for everyone else (cross-venue and range work).
    """

    records_findings = True

    def __init__(self, app: Any, *, close: Callable[[], Awaitable[None]] | None = None
                 ) -> None:
        self._app = app  # usdcarb.validation.app.ValidationApp
        self._close = close

    async def close(self) -> None:
        if self._close is not None:
            await self._close()

    async def validate(self, exchange: str, symbol: str, timeframe: str,
                       bars: Bars) -> Verdict:
        if not len(bars):
            return Verdict(np.ones(0, bool), ())
        batch = vmodel.Bars.of(bars.ts_ms, bars.open, bars.high, bars.low, bars.close,
                               bars.volume)
        try:
            verdict = await self._app.validate_candles(
                vseries.Series(exchange, symbol, timeframe), batch, record=True,
                cross_venue=False)
        except db.UNAVAILABLE as exc:  # the worker retries the batch, as on UNAVAILABLE
            raise ValidationUnavailable(f"validation store unavailable: {exc!r}") from exc
        return to_verdict(verdict)

    async def validate_range(self, exchange: str, symbol: str, timeframe: str,
                             start_ms: int, end_ms: int) -> int:
        """ValidateRange's use case over stored bars [start_ms, end_ms): every rule, the
        findings, the gaps and the series verdicts recorded; return the bars checked."""
        try:
            result = await self._app.validate_range(
                vseries.Series(exchange, symbol, timeframe), start_ms, end_ms,
                cross_venue=False)
        except db.UNAVAILABLE as exc:
            raise ValidationUnavailable(f"validation store unavailable: {exc!r}") from exc
        return int(result.bars_checked)


def to_verdict(verdict: vvalidate.Verdict) -> Verdict:
    """The validation domain's verdict as the worker's (flags, rejections with reasons)."""
    errors = verdict.errors_by_index()
    accepted = np.asarray(verdict.accepted, bool)
    return Verdict(accepted, tuple(
        Rejection(i, tuple(f.rule for f in errors.get(i, ())) or ("validation",),
                  errors[i][0].message if i in errors else "rejected by validation")
        for i in np.flatnonzero(~accepted).tolist()))


class DroppedEvents:
    """An EventSink for a process without an event bus (events off)."""

    async def publish(self, event: Any) -> None:
        return None


def combine(local: Verdict, remote: Verdict) -> Verdict:
    """A bar is stored only if both accept it; rejections keep the local reason first."""
    accepted = local.accepted & remote.accepted
    seen = {r.index for r in local.rejections}
    extra = tuple(r for r in remote.rejections if r.index not in seen)
    return Verdict(accepted, tuple(sorted(local.rejections + extra, key=lambda r: r.index)))
