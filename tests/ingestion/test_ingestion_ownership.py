"""Ownership of ingest jobs: only the owner or an admin cancels (real PostgreSQL)."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from tests.ingestion.conftest import MakeIngestion, job_request

from usdcarb.platform.testing import bearer
from usdcarb.v1 import common_pb2 as cpb
from usdcarb.v1 import ingestion_pb2 as pb

pytestmark = pytest.mark.integration

START, END = "2023-03-10T00:00:00", "2023-03-10T12:00:00"
OWNER = "users/tester"  # the subject of the fixture channel's token


def trader(subject: str) -> tuple[tuple[str, str], ...]:
    return bearer(subject, ("trader",))


def error_info(err: grpc.aio.AioRpcError) -> list[tuple[str, dict[str, str]]]:
    status = rpc_status.from_call(err)
    assert status is not None
    out = []
    for d in status.details:
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            ei = error_details_pb2.ErrorInfo()
            d.Unpack(ei)
            out.append((ei.reason, dict(ei.metadata)))
    return out


async def test_only_owner_or_admin_cancels_an_ingest_job(make_ingestion: MakeIngestion) -> None:
    ing = await make_ingestion(worker_concurrency=0)  # jobs stay queued
    a = await ing.stub.CreateIngestJob(job_request("binance", "USDC/USDT", START, END))
    b = await ing.stub.CreateIngestJob(job_request("okx", "USDC/USDT", START, END))
    assert (a.owner, a.creator) == (OWNER, OWNER)
    before = await ing.pool.fetch("SELECT * FROM ingest_jobs ORDER BY id")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ing.stub.CancelIngestJob(pb.CancelIngestJobRequest(name=a.name),
                                       metadata=trader("users/bob"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(err.value) == [("NOT_OWNER", {"resource": a.name})]
    assert await ing.pool.fetch("SELECT * FROM ingest_jobs ORDER BY id") == before
    # Others read it (research data is readable by the team).
    seen = await ing.stub.GetIngestJob(pb.GetIngestJobRequest(name=a.name),
                                       metadata=bearer("users/bob", ("viewer",)))
    assert seen.state == cpb.JOB_STATE_QUEUED and seen.owner == OWNER
    by_admin = await ing.stub.CancelIngestJob(pb.CancelIngestJobRequest(name=a.name),
                                              metadata=bearer("users/root", ("admin",)))
    assert by_admin.state == cpb.JOB_STATE_CANCELLED
    by_owner = await ing.stub.CancelIngestJob(pb.CancelIngestJobRequest(name=b.name))
    assert by_owner.state == cpb.JOB_STATE_CANCELLED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ing.stub.CancelIngestJob(pb.CancelIngestJobRequest(name="ingestJobs/nope"),
                                       metadata=trader("users/bob"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_list_ingest_jobs_by_owner(make_ingestion: MakeIngestion) -> None:
    ing = await make_ingestion(worker_concurrency=0)
    mine = await ing.stub.CreateIngestJob(job_request("binance", "USDC/USDT", START, END))
    theirs = await ing.stub.CreateIngestJob(job_request("okx", "USDC/USDT", START, END),
                                            metadata=trader("users/bob"))
    listed = await ing.stub.ListIngestJobs(pb.ListIngestJobsRequest(owner="users/me"))
    assert [j.name for j in listed.ingest_jobs] == [mine.name]
    listed = await ing.stub.ListIngestJobs(pb.ListIngestJobsRequest(owner="users/bob"))
    assert [j.name for j in listed.ingest_jobs] == [theirs.name]
    listed = await ing.stub.ListIngestJobs(pb.ListIngestJobsRequest())
    assert {j.name for j in listed.ingest_jobs} == {mine.name, theirs.name}
