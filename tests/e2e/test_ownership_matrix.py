"""The ownership matrix through Envoy: owner / another user of the same role / admin x every
write RPC of every owned resource, over REST and gRPC.

Expected: the other user is refused (gRPC PERMISSION_DENIED, REST 403 with a JSON Status,
ErrorInfo reason NOT_OWNER) and the row is unchanged afterwards; the owner and an admin
succeed. Each cell gets fresh resources and fresh subjects (so per-subject rate limits
never interfere). Jobs that would start real work (backtests, sweeps, ingest jobs) are
seeded as rows in their services' tables, with an owner, in an active state no worker
takes; everything else is created through the gateway by its owner.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from identity.gatewaykit import admin_token, call, create_user
from usdcarb.devstack.stack import StackInfo
from usdcarb.gateway.devtoken import mint_dev_token
from usdcarb.platform.ownership import OWNED_WRITES
from usdcarb.v1 import (
    backtest_pb2,
    backtest_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
    ingestion_pb2,
    ingestion_pb2_grpc,
    strategy_pb2,
    strategy_pb2_grpc,
)

pytestmark = pytest.mark.e2e

SPREAD = {"crossExchangeSpread": {"symbol": "USDC/USDT", "venueA": "binance",
                                  "venueB": "kraken", "entryBps": 15, "exitBps": 3,
                                  "quantity": 1000}}


def sql(stack: StackInfo, query: str, *args: Any) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(stack.dsn)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()
    return asyncio.run(run())


def subject(kind: str) -> str:
    return f"users/{kind}-{uuid.uuid4().hex[:10]}"


def tok(sub: str, role: str = "trader") -> str:
    return mint_dev_token(sub, [role], ttl=600)


def rest_ok(stack: StackInfo, method: str, path: str, body: Any, token: str) -> Any:
    reply = call(stack, method, path, body, token=token)
    assert reply.status == 200, (method, path, reply.status, reply.body)
    return reply.json()


# -- owned resources, made by their owner -------------------------------------------------
def make_strategy(stack: StackInfo, owner: str) -> str:
    made = rest_ok(stack, "POST", "/v1/strategies", {
        "displayName": "owned", "kind": "STRATEGY_KIND_CROSS_EXCHANGE_SPREAD"}, tok(owner))
    return str(made["name"])


def make_version(stack: StackInfo, owner: str) -> str:
    s = make_strategy(stack, owner)
    v = rest_ok(stack, "POST", f"/v1/{s}/versions", {"parameters": SPREAD}, tok(owner))
    for state in ("VERSION_STATE_BACKTESTED", "VERSION_STATE_APPROVED"):
        rest_ok(stack, "POST", f"/v1/{v['name']}:transition", {"state": state}, tok(owner))
    return str(v["name"])


def make_deployment(stack: StackInfo, owner: str) -> str:
    v = make_version(stack, owner)
    d = rest_ok(stack, "POST", f"/v1/{v.split('/versions/')[0]}/deployments", {
        "version": v, "environment": "DEPLOYMENT_ENVIRONMENT_PAPER"}, tok(owner))
    return str(d["name"])


def make_backtest(stack: StackInfo, owner: str) -> str:
    job = f"bt-own-{uuid.uuid4().hex[:12]}"  # QUEUED, but never enqueued: no worker runs it
    sql(stack, "INSERT INTO backtest.backtests (id, strategy_version, config, creator, owner)"
               " VALUES ($1, 'strategies/x/versions/0123456789abcdef', '{}', $2, $2)",
        job, owner)
    return f"backtests/{job}"


def make_sweep(stack: StackInfo, owner: str) -> str:
    job = f"sw-own-{uuid.uuid4().hex[:12]}"
    sql(stack, "INSERT INTO backtest.sweeps (id, strategy_version, config, axes, creator, "
               "owner) VALUES ($1, 'strategies/x/versions/0123456789abcdef', '{}', '[]', $2, $2)",
        job, owner)
    return f"sweeps/{job}"


def make_ingest_job(stack: StackInfo, owner: str) -> str:
    job = f"own{uuid.uuid4().hex[:16]}"  # RUNNING under a lease no worker may take over
    sql(stack, "INSERT INTO ingestion.ingest_jobs (id, exchange, symbol, timeframe, mode, "
               "state, lease_owner, lease_until, creator, owner) VALUES ($1, 'binance', "
               "'USDC/USDT', '1m', 'INGEST_MODE_INCREMENTAL', 'JOB_STATE_RUNNING', 'ghost', "
               "now() + interval '1 hour', $2, $2)", job, owner)
    return f"ingestJobs/{job}"


def make_archive_import(stack: StackInfo, owner: str) -> str:
    job = f"own{uuid.uuid4().hex[:16]}"  # RUNNING under a lease no worker may take over
    sql(stack, "INSERT INTO ingestion.archive_imports (id, layout, location, exchange, symbol, "
               "market_id, timeframe, state, lease_owner, lease_until, creator, owner) VALUES "
               "($1, 'binance_spot', 'http://127.0.0.1:9/none', 'binance', 'USDC/USDT', "
               "'USDCUSDT', '1m', 'JOB_STATE_RUNNING', 'ghost', now() + interval '1 hour', "
               "$2, $2)", job, owner)
    return f"archiveImports/{job}"


def make_api_key(stack: StackInfo, owner: str) -> str:
    expire = (datetime.now(UTC) + timedelta(days=7)).isoformat().replace("+00:00", "Z")
    made = rest_ok(stack, "POST", f"/v1/{owner}/apiKeys", {
        "displayName": "ci", "roles": ["ROLE_VIEWER"], "expireTime": expire}, tok(owner))
    return str(made["apiKey"]["name"])


# -- the write RPCs ----------------------------------------------------------------------
Grpc = Callable[[grpc.Channel, str, list[tuple[str, str]]], Any]


@dataclass(frozen=True)
class Write:
    rpc: str
    make: Callable[[StackInfo, str], str]
    rest: Callable[[str], tuple[str, str, Any]]
    grpc: Grpc
    row: Callable[[str], tuple[str, str]]  # target -> (SQL of its row as JSON, key)
    real_users: bool = False  # the owner must exist in identity (API keys)


def _strategy_row(name: str) -> tuple[str, str]:
    return "SELECT to_jsonb(t) FROM strategy.strategies t WHERE id = $1", name.split("/")[1]


def _version_row(name: str) -> tuple[str, str]:
    return ("SELECT jsonb_build_object('v', (SELECT to_jsonb(v) FROM strategy.versions v "
            "WHERE strategy_id || '/' || version_id = $1), 'n', (SELECT count(*) FROM "
            "strategy.versions WHERE strategy_id = split_part($1, '/', 1)), 'd', (SELECT "
            "count(*) FROM strategy.deployments WHERE strategy_id = split_part($1, '/', 1)))",
            f"{name.split('/')[1]}/{name.split('/')[3]}")


def _deployment_row(name: str) -> tuple[str, str]:
    return "SELECT to_jsonb(t) FROM strategy.deployments t WHERE id = $1", name.split("/")[3]


def _paper_row(name: str) -> tuple[str, str]:
    return ("SELECT jsonb_build_object('runs', count(*)) FROM backtest.paper_runs "
            "WHERE deployment = $1", name.removesuffix("/paperRun"))


PAPER_CONFIG = {"range": {"startTime": "2023-03-10T00:00:00Z"}, "timeframe": "1m",
                "quoteAsset": "USDT", "venues": [
                    {"venue": v, "takerFeeBps": 1.0,
                     "initialBalances": [{"asset": "USDC", "amount": 1e5},
                                         {"asset": "USDT", "amount": 1e5}]}
                    for v in ("binance", "kraken")]}


def _job_row(table: str) -> Callable[[str], tuple[str, str]]:
    return lambda name: (f"SELECT to_jsonb(t) FROM {table} t WHERE id = $1", name.split("/")[1])


def _key_row(name: str) -> tuple[str, str]:
    return "SELECT to_jsonb(t) FROM identity.api_keys t WHERE id = $1", name.split("/")[3]


def _strategy(ch: grpc.Channel) -> Any:
    return strategy_pb2_grpc.StrategyServiceStub(ch)


WRITES = [
    Write("UpdateStrategy", make_strategy,
          lambda n: ("PATCH", f"/v1/{n}", {"displayName": "renamed"}),
          lambda ch, n, md: _strategy(ch).UpdateStrategy(strategy_pb2.UpdateStrategyRequest(
              strategy=strategy_pb2.Strategy(name=n, display_name="renamed"),
              update_mask={"paths": ["display_name"]}), metadata=md, timeout=10),
          _strategy_row),
    Write("DeleteStrategy", make_strategy, lambda n: ("DELETE", f"/v1/{n}", None),
          lambda ch, n, md: _strategy(ch).DeleteStrategy(
              strategy_pb2.DeleteStrategyRequest(name=n), metadata=md, timeout=10),
          _strategy_row),
    Write("CreateStrategyVersion", make_strategy,
          lambda n: ("POST", f"/v1/{n}/versions", {"parameters": SPREAD}),
          lambda ch, n, md: _strategy(ch).CreateStrategyVersion(
              strategy_pb2.CreateStrategyVersionRequest(
                  parent=n, version=strategy_pb2.StrategyVersion(parameters=strategy_pb2
                      .StrategyParameters(cross_exchange_spread=strategy_pb2
                          .CrossExchangeSpreadParams(symbol="USDC/USDT", venue_a="binance",
                              venue_b="kraken", entry_bps=15, exit_bps=3,
                              quantity=1000)))), metadata=md, timeout=10),
          _strategy_row),
    Write("TransitionStrategyVersion", make_version,
          lambda n: ("POST", f"/v1/{n}:transition", {"state": "VERSION_STATE_RETIRED"}),
          lambda ch, n, md: _strategy(ch).TransitionStrategyVersion(
              strategy_pb2.TransitionStrategyVersionRequest(
                  name=n, state=strategy_pb2.VERSION_STATE_RETIRED), metadata=md, timeout=10),
          _version_row),
    Write("CreateDeployment", make_version,
          lambda n: ("POST", f"/v1/{n.split('/versions/')[0]}/deployments", {
              "version": n, "environment": "DEPLOYMENT_ENVIRONMENT_PAPER"}),
          lambda ch, n, md: _strategy(ch).CreateDeployment(
              strategy_pb2.CreateDeploymentRequest(
                  parent=n.split("/versions/")[0], deployment=strategy_pb2.Deployment(
                      version=n, environment=strategy_pb2.DEPLOYMENT_ENVIRONMENT_PAPER)),
              metadata=md, timeout=10),
          _version_row),
    Write("StopDeployment", make_deployment, lambda n: ("POST", f"/v1/{n}:stop", {}),
          lambda ch, n, md: _strategy(ch).StopDeployment(
              strategy_pb2.StopDeploymentRequest(name=n), metadata=md, timeout=10),
          _deployment_row),
    Write("StartPaperRun", lambda stack, owner: make_deployment(stack, owner) + "/paperRun",
          lambda n: ("POST", f"/v1/{n}:start", {"config": PAPER_CONFIG}),
          lambda ch, n, md: backtest_pb2_grpc.BacktestServiceStub(ch).StartPaperRun(
              json_format.ParseDict({"name": n, "config": PAPER_CONFIG},
                                    backtest_pb2.StartPaperRunRequest()),
              metadata=md, timeout=10),
          _paper_row),
    Write("CancelBacktest", make_backtest, lambda n: ("POST", f"/v1/{n}:cancel", {}),
          lambda ch, n, md: backtest_pb2_grpc.BacktestServiceStub(ch).CancelBacktest(
              backtest_pb2.CancelBacktestRequest(name=n), metadata=md, timeout=10),
          _job_row("backtest.backtests")),
    Write("CancelSweep", make_sweep, lambda n: ("POST", f"/v1/{n}:cancel", {}),
          lambda ch, n, md: backtest_pb2_grpc.BacktestServiceStub(ch).CancelSweep(
              backtest_pb2.CancelSweepRequest(name=n), metadata=md, timeout=10),
          _job_row("backtest.sweeps")),
    Write("CancelIngestJob", make_ingest_job, lambda n: ("POST", f"/v1/{n}:cancel", {}),
          lambda ch, n, md: ingestion_pb2_grpc.IngestionServiceStub(ch).CancelIngestJob(
              ingestion_pb2.CancelIngestJobRequest(name=n), metadata=md, timeout=10),
          _job_row("ingestion.ingest_jobs")),
    Write("CancelArchiveImport", make_archive_import, lambda n: ("POST", f"/v1/{n}:cancel", {}),
          lambda ch, n, md: ingestion_pb2_grpc.IngestionServiceStub(ch).CancelArchiveImport(
              ingestion_pb2.CancelArchiveImportRequest(name=n), metadata=md, timeout=10),
          _job_row("ingestion.archive_imports")),
    Write("RevokeApiKey", make_api_key, lambda n: ("POST", f"/v1/{n}:revoke", {}),
          lambda ch, n, md: identity_pb2_grpc.IdentityServiceStub(ch).RevokeApiKey(
              identity_pb2.RevokeApiKeyRequest(name=n), metadata=md, timeout=10),
          _key_row, real_users=True),
]


def _reason(err: grpc.RpcError) -> tuple[str, dict[str, str]]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason, dict(info.metadata)
    return "", {}


@pytest.fixture(scope="module")
def admin(stack: StackInfo) -> str:
    return admin_token(stack, source="127.0.0.21")


def _people(stack: StackInfo, admin: str, w: Write) -> tuple[str, str, str]:
    """Owner, another user of the same role (trader), and an admin: fresh subjects."""
    if w.real_users:
        owner = create_user(stack, admin, "trader", "own")["name"]
        other = create_user(stack, admin, "trader", "oth")["name"]
        return owner, other, subject("adm")
    return subject("own"), subject("oth"), subject("adm")


def _act(stack: StackInfo, w: Write, transport: str, target: str, sub: str, role: str
         ) -> tuple[bool, str, dict[str, str]]:
    """Run the write as ``sub``; return (ok, what, ErrorInfo metadata when refused)."""
    token = tok(sub, role)
    if transport == "rest":
        method, path, body = w.rest(target)
        reply = call(stack, method, path, body, token=token)
        if reply.status == 200:
            return True, "200", {}
        status = json.loads(reply.body)  # a JSON google.rpc.Status, never text
        infos = [d for d in status.get("details", []) if d.get("@type", "").endswith(
            "google.rpc.ErrorInfo")]
        meta = infos[0].get("metadata", {}) if infos else {}
        reason = infos[0].get("reason", "") if infos else ""
        return False, f"{reply.status} code={status.get('code')} {reason}", meta
    with stack.channel() as channel:
        try:
            w.grpc(channel, target, [("authorization", f"Bearer {token}")])
        except grpc.RpcError as err:
            reason, meta = _reason(err)
            return False, f"{err.code().name} {reason}", meta
    return True, "OK", {}


@pytest.mark.parametrize("transport", ["rest", "grpc"])
@pytest.mark.parametrize("w", WRITES, ids=lambda w: w.rpc)
def test_owner_and_admin_write_another_user_is_refused_and_changes_nothing(
    stack: StackInfo, admin: str, w: Write, transport: str
) -> None:
    owner, other, boss = _people(stack, admin, w)
    target = w.make(stack, owner)
    query, key = w.row(target)
    before = sql(stack, query, key)
    assert before is not None
    ok, what, meta = _act(stack, w, transport, target, other, "trader")
    refused = "403 code=7 NOT_OWNER" if transport == "rest" else "PERMISSION_DENIED NOT_OWNER"
    assert (ok, what) == (False, refused), f"{w.rpc} by another trader over {transport}"
    assert meta == {"resource": target}  # names the resource, never its owner
    assert sql(stack, query, key) == before, f"{w.rpc}: a refused write changed the row"
    ok, what, _ = _act(stack, w, transport, target, owner, "trader")
    assert ok, f"{w.rpc} by its owner over {transport}: {what}"
    assert sql(stack, query, key) != before, f"{w.rpc} by its owner changed nothing"
    second = w.make(stack, owner)
    ok, what, _ = _act(stack, w, transport, second, boss, "admin")
    assert ok, f"{w.rpc} by an admin over {transport}: {what}"


def test_the_matrix_covers_every_owned_write() -> None:
    covered = {m for m in OWNED_WRITES if m.split("/")[1] in {w.rpc for w in WRITES}}
    assert covered == set(OWNED_WRITES) and len(WRITES) == len(OWNED_WRITES)
