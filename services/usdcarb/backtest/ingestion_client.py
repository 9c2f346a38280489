"""The IngestionService as the backtest service uses it: the follow jobs of paper runs.

Every call is made as the principal ``service:backtest`` (``usdcarb.platform.service_auth``),
which the role table grants exactly CreateIngestJob, GetIngestJob and CancelIngestJob.
A failed call raises ``IngestionUnavailable``: the caller (the paper supervisor) retries
on its next look, a paper run never fails because ingestion did not answer.
"""

from __future__ import annotations

from datetime import UTC, datetime

import grpc

from usdcarb.platform.service_auth import ServiceCredentialRefused, TokenSource, call_as_service
from usdcarb.v1 import common_pb2 as cpb
from usdcarb.v1 import ingestion_pb2 as ipb
from usdcarb.v1 import ingestion_pb2_grpc

TIMEOUT_S = 10.0
TERMINAL = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")


class IngestionUnavailable(Exception):
    """The ingestion service did not do what was asked (retry later)."""


class IngestionClient:
    """A channel to the ingestion service (closed by ``close``)."""

    def __init__(self, channel: grpc.aio.Channel, token: TokenSource) -> None:
        # The token source is the service's one, shared with (and closed by) the
        # StrategyClient.
        self._channel = channel
        self._token = token
        self._stub = ingestion_pb2_grpc.IngestionServiceStub(channel)  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: str, request: object) -> ipb.IngestJob:
        try:
            job: ipb.IngestJob = await call_as_service(
                self._token, getattr(self._stub, method), request, timeout=TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise IngestionUnavailable(
                f"{method}: {exc.code().name} {exc.details()}") from None
        except ServiceCredentialRefused as exc:
            raise IngestionUnavailable(f"{method}: {exc}") from None
        return job

    async def follow(self, *, exchange: str, symbol: str, timeframe: str, start_ms: int,
                     request_id: str) -> tuple[str, str]:
        """Start (or, for a repeated ``request_id``, find) a FOLLOW job of the series from
        ``start_ms``; return its name and state."""
        job = ipb.IngestJob(series=cpb.SeriesKey(exchange=exchange, symbol=symbol,
                                                 timeframe=timeframe),
                            mode=ipb.INGEST_MODE_FOLLOW)
        job.range.start_time.FromDatetime(datetime.fromtimestamp(start_ms / 1000, UTC))
        got = await self._call("CreateIngestJob", ipb.CreateIngestJobRequest(
            ingest_job=job, request_id=request_id))
        return str(got.name), str(cpb.JobState.Name(got.state))

    async def state(self, name: str) -> str:
        """The job's JobState name."""
        got = await self._call("GetIngestJob", ipb.GetIngestJobRequest(name=name))
        return str(cpb.JobState.Name(got.state))

    async def cancel(self, name: str) -> str:
        """Cancel the job (a finished one is left as it is); its JobState name after."""
        got = await self._call("CancelIngestJob", ipb.CancelIngestJobRequest(name=name))
        return str(cpb.JobState.Name(got.state))
