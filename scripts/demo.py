"""Exercise the running stack end to end through the gateway (``make demo``).

REST/JSON and native gRPC both go through Envoy with a development token: create a
strategy, two content-addressed versions, a diff, an idempotent re-create and a bad
request answered with field violations.
"""

from __future__ import annotations

import functools
import json
import ssl
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from usdcarb.devstack.stack import REPO, StackInfo
from usdcarb.gateway.devtoken import mint_dev_token
from usdcarb.v1 import strategy_pb2 as pb
from usdcarb.v1 import strategy_pb2_grpc

BOLD, DIM, RESET = "\033[1m", "\033[2m", "\033[0m"


def say(title: str) -> None:
    print(f"\n{BOLD}== {title}{RESET}")


def rest(base: str, token: str, method: str, path: str, body: Any = None, *,
         context: ssl.SSLContext | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        base + path, data=data, method=method,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    print(f"{DIM}$ {method} {path}{' ' + json.dumps(body) if body else ''}{RESET}")
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw)
        except ValueError:
            return err.code, raw.decode()


def main() -> int:
    info = StackInfo.load(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / ".run/stack/stack.json")
    base = info.gateway
    call = functools.partial(rest, base, context=info.ssl_context())  # HTTPS, the dev CA
    token = mint_dev_token("demo-analyst", ["analyst"])
    sid = f"usdc-spread-{uuid.uuid4().hex[:6]}"
    params = {"crossExchangeSpread": {"symbol": "USDC/USDT", "venueA": "binance",
                                      "venueB": "kraken", "entryBps": 15, "exitBps": 3,
                                      "quantity": 10000}}

    say(f"REST through Envoy at {base}")
    code, body = call(token, "POST", f"/v1/strategies?strategyId={sid}",
                      {"displayName": "USDC/USDT Binance vs Kraken",
                       "kind": "STRATEGY_KIND_CROSS_EXCHANGE_SPREAD"})
    print(code, json.dumps(body, indent=2))
    assert code == 200, body
    code, v1 = call(token, "POST", f"/v1/strategies/{sid}/versions",
                    {"parameters": params, "description": "spread-arb-v1 defaults"})
    print(code, json.dumps({k: v1[k] for k in ("name", "versionId", "state", "contentHash")},
                           indent=2))
    assert code == 200, v1
    code, again = call(token, "POST", f"/v1/strategies/{sid}/versions",
                       {"parameters": params})
    print(code, "same parameters → same version:", again["name"] == v1["name"])
    code, bad = call(token, "POST", f"/v1/strategies/{sid}/versions",
                     {"parameters": {"crossExchangeSpread": {**params["crossExchangeSpread"],
                                                             "exitBps": 40, "venueB": "binance"}}})
    print(code, json.dumps(bad, indent=2))
    assert code == 400, bad
    code, _ = call("not-a-token", "GET", f"/v1/strategies/{sid}")
    print(code, "(a bad token is refused at the gateway)")

    say("native gRPC through Envoy")
    metadata = (("authorization", f"Bearer {token}"),)
    with info.channel() as channel:  # TLS, trusting the stack's dev CA
        stub = strategy_pb2_grpc.StrategyServiceStub(channel)
        strategy = stub.GetStrategy(pb.GetStrategyRequest(name=f"strategies/{sid}"),
                                    metadata=metadata, timeout=10)
        print(f"GetStrategy → {strategy.name} kind={pb.StrategyKind.Name(strategy.kind)} "
              f"versions={strategy.version_count} creator={strategy.creator}")
        tighter = json_format.ParseDict(
            {"crossExchangeSpread": {**params["crossExchangeSpread"], "entryBps": 10}},
            pb.StrategyParameters())
        v2 = stub.CreateStrategyVersion(
            pb.CreateStrategyVersionRequest(
                parent=f"strategies/{sid}",
                version=pb.StrategyVersion(parameters=tighter, description="tighter entry")),
            metadata=metadata, timeout=10)
        print(f"CreateStrategyVersion → {v2.name} (sequence {v2.sequence})")
        diff = stub.DiffStrategyVersions(
            pb.DiffStrategyVersionsRequest(name=v1["name"], other=v2.name),
            metadata=metadata, timeout=10)
        for change in diff.changes:
            print(f"  {change.path}: {json_format.MessageToJson(change.old_value)} → "
                  f"{json_format.MessageToJson(change.new_value)}")
        versions = stub.ListStrategyVersions(
            pb.ListStrategyVersionsRequest(parent=f"strategies/{sid}"),
            metadata=metadata, timeout=10)
        print(f"ListStrategyVersions → {[v.version_id for v in versions.versions]}")
        try:
            stub.GetStrategy(pb.GetStrategyRequest(name=f"strategies/{sid}"), timeout=10)
        except grpc.RpcError as err:
            print(f"without a token → {err.code().name}")
    say("done — the stack keeps running; `make down` stops it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
