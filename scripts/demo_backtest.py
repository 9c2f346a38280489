"""Demo: a backtest of each strategy kind through the gateway, streamed live, with reports.

    python scripts/demo_backtest.py [--gateway https://localhost:8080] [--cacert CA] \
        [--reports .run/reports]

The gateway is called over HTTPS trusting the local stack's dev CA
(``.run/stack/tls/ca.pem``, or ``$USDCARB_CA_FILE``).

1. Ingests the demo market data through the platform itself: ``usdcarb data backfill``
   jobs (gateway → ingestion → ccxt → the exchange replay server serving the committed
   samples, validated page by page), 10-13 March 2023, the days of the USDC depeg:
   BTC/USDC on Binance.US and Bybit (whose prices parted by up to 11%), and Binance.US
   BTC/USDT and USDC/USDT (with BTC/USDC, a triangle on one venue; USDC/USDT is USDC's
   USDT quote for peg reversion).
2. Creates a strategy and a version of each kind over REST: cross-exchange spread, peg
   reversion, triangular.
3. Runs each backtest with ``POST /v1/backtests:run`` (the spread one with the
   robustness panel) and prints the NDJSON progress stream as it arrives (a progress
   bar), then the final metrics, absolute and over the hold baseline.
4. Writes one self-contained HTML report per backtest (``usdcarb_sdk.report``, the same
   as ``usdcarb report``) into ``--reports``.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
START, END = "2023-03-10T00:00:00Z", "2023-03-13T00:00:00Z"
SYMBOL = "BTC/USDC"
VENUES = ("binance", "bybit")
SERIES = (("binance", "BTC/USDC"), ("bybit", "BTC/USDC"), ("binance", "BTC/USDT"),
          ("binance", "USDC/USDT"))


def out(line: str = "", end: str = "\n") -> None:
    sys.stdout.write(line + end)
    sys.stdout.flush()


def request(gateway: str, token: str, method: str, path: str, body: Any = None) -> Any:
    req = urllib.request.Request(
        gateway + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        raise SystemExit(f"{method} {path} -> {err.code}: {err.read().decode()}") from None


def ingest(gateway: str, token: str) -> None:
    """Backfill the demo series through the gateway (idempotent: re-runs store nothing new)."""
    for venue, symbol in SERIES:
        out(f"  backfill {venue} {symbol} 1m {START[:10]} .. {END[:10]}")
        subprocess.run(
            [sys.executable, "-m", "usdcarb", "data", "backfill", "--exchange", venue,
             "--symbol", symbol, "--start", START, "--end", END, "--gateway", gateway,
             "--token", token], check=True)


def bar(fraction: float, width: int = 40) -> str:
    filled = round(fraction * width)
    return "[" + "#" * filled + "-" * (width - filled) + f"] {fraction:6.1%}"


def _balances(**amounts: float) -> list[dict[str, Any]]:
    return [{"asset": a, "amount": x} for a, x in amounts.items()]


def _config(quote: str, venues: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"range": {"startTime": START, "endTime": END}, "timeframe": "1m",
            "fillPolicy": "FILL_POLICY_NEXT_BAR", "quoteAsset": quote, "venues": venues,
            **extra}


def kinds() -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(title, kind, parameters, config) of the three demo backtests."""
    spread_venue = [{"venue": v, "takerFeeBps": 10, "makerFeeBps": 10,
                     "slippage": {"fixedBps": 2},
                     "initialBalances": _balances(BTC=5, USDC=200_000)} for v in VENUES]
    transfers = [{"fromVenue": a, "toVenue": b, "asset": asset, "fee": fee, "delayBars": 30}
                 for a, b in (VENUES, VENUES[::-1])
                 for asset, fee in (("BTC", 0.0002), ("USDC", 1))]
    one_venue = {"venue": "binance", "takerFeeBps": 1, "makerFeeBps": 1,
                 "slippage": {"fixedBps": 0.5}}
    return [
        (f"cross-exchange spread {SYMBOL}, {VENUES[0]} vs {VENUES[1]}",
         "STRATEGY_KIND_CROSS_EXCHANGE_SPREAD",
         {"crossExchangeSpread": {"symbol": SYMBOL, "venueA": VENUES[0], "venueB": VENUES[1],
                                  "entryBps": 60, "exitBps": 5, "quantity": 0.5,
                                  "maxHoldingBars": 720}},
         _config("USDC", spread_venue, transfers=transfers,
                 robustness={"enabled": True})),
        ("peg reversion USDC/USDT on binance", "STRATEGY_KIND_PEG_REVERSION",
         {"pegReversion": {"venue": "binance", "symbol": "USDC/USDT", "peg": 1.0,
                           "entryBps": 50, "exitBps": 10, "quantity": 20_000,
                           "stopLossBps": 500}},
         _config("USDT", [{**one_venue,
                           "initialBalances": _balances(USDC=100_000, USDT=100_000)}])),
        ("triangular BTC/USDC, BTC/USDT, USDC/USDT on binance", "STRATEGY_KIND_TRIANGULAR",
         {"triangular": {"venue": "binance", "symbols": ["BTC/USDC", "BTC/USDT", "USDC/USDT"],
                         "minEdgeBps": 5, "notional": 10_000, "cooldownBars": 5}},
         _config("USDC", [{**one_venue,
                           "initialBalances": _balances(BTC=2, USDC=100_000,
                                                        USDT=100_000)}])),
    ]


def run_backtest(gw: str, token: str, version: str, config: dict[str, Any]) -> dict[str, Any]:
    """Run one backtest over REST, drawing its NDJSON progress; return the last event."""
    body = {"strategyVersion": version, "progressInterval": "0.05s",
            "requestId": str(uuid.uuid4()), "config": config}
    req = urllib.request.Request(
        gw + "/v1/backtests:run", method="POST", data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    last: dict[str, Any] = {}
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            for raw in resp:
                line = raw.strip()
                if not line:
                    continue
                event = json.loads(line)
                last = event
                if "progress" in event:
                    p = event["progress"].get("progress", {})
                    out(f"\r  {event['backtest']} {bar(float(p.get('fraction', 0)))} "
                        f"{int(p.get('done', 0)):>7}/{int(p.get('total', 0))} bars  "
                        f"equity {float(event['progress'].get('equity', 0)):,.2f}  "
                        f"{event['state'].removeprefix('JOB_STATE_'):<9}", end="")
    except urllib.error.HTTPError as err:
        raise SystemExit(f"\nRunBacktest -> {err.code}: {err.read().decode()}") from None
    out()
    return last


def show(result: dict[str, Any], quote: str, elapsed: float) -> None:
    m = result["metrics"]
    base = result.get("baselineMetrics")
    out(f"  finished in {elapsed:.2f}s (engine {result.get('elapsed')}), {result['bars']} bars, "
        f"{result.get('tradeCount', 0)} fills, fingerprint {result['fingerprint']['digest'][:16]}")
    out(f"  execution: {result.get('executionModel') or 'not reported'}")
    rows = [("total return (absolute)", f"{m.get('totalReturn', 0):.4%}"),
            ("Sharpe / max drawdown (absolute)",
             f"{m.get('sharpe', 0):.3f} / {m.get('maxDrawdown', 0):.4%}")]
    if base is not None:
        rows += [("hold baseline return", f"{base.get('totalReturn', 0):.4%}"),
                 ("excess return / PnL over hold",
                  f"{m.get('excessReturn', 0):.4%} / {m.get('excessPnl', 0):,.2f} {quote}"),
                 ("excess Sharpe / max drawdown",
                  f"{m.get('excessSharpe', 0):.3f} / {m.get('excessMaxDrawdown', 0):.4%}")]
    a = m.get("attribution")
    if a:
        rows.append(("attribution", ", ".join(
            f"{k} {float(a.get(k, 0)):,.2f}" for k in (
                "inventoryRevaluation", "tradingPnl", "fees", "slippage", "transferCosts",
                "legging"))))
    rows += [("round trips / win rate", f"{m.get('roundTrips', 0)} / {m.get('winRate', 0):.1%}"),
             ("fees / slippage paid",
              f"{m.get('feesPaid', 0):,.2f} / {m.get('slippagePaid', 0):,.2f} {quote}"),
             ("theoretical / realised edge",
              f"{m.get('theoreticalEdgeBps', 0):.2f} / {m.get('realizedEdgeBps', 0):.2f} bps")]
    for s in (result.get("robustness") or {}).get("scenarios", []):
        rows.append((f"robustness: {s['label']}",
                     f"{s.get('metrics', {}).get('totalReturn', 0):.4%}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out(f"  {key:<{width}}  {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", default=os.environ.get(
        "USDCARB_GATEWAY", f"https://localhost:{os.environ.get('USDCARB_GATEWAY_PORT', '8080')}"))
    parser.add_argument("--cacert", default=os.environ.get(
        "USDCARB_CA_FILE", str(REPO / ".run/stack/tls/ca.pem")), help="CA to trust (PEM)")
    parser.add_argument("--reports", type=Path, default=REPO / ".run" / "reports",
                        help="where the HTML reports go")
    args = parser.parse_args(argv)
    if args.gateway.startswith("https://"):
        # Every HTTPS call here (and the backfill CLI it runs) trusts the stack's dev CA.
        context = ssl.create_default_context(cafile=args.cacert)
        urllib.request.install_opener(
            urllib.request.build_opener(urllib.request.HTTPSHandler(context=context)))
        os.environ["USDCARB_CA_FILE"] = args.cacert
    from usdcarb.gateway.devtoken import mint_dev_token
    from usdcarb_sdk import Client
    from usdcarb_sdk.report import report

    token = mint_dev_token("demo-trader", ["trader"])
    gw = args.gateway.rstrip("/")
    out("== backtest demo: every strategy kind on the USDC depeg, 10-13 March 2023 ==")
    ingest(gw, token)
    args.reports.mkdir(parents=True, exist_ok=True)
    failed = 0
    with Client(gw, token=token, ca_file=args.cacert if gw.startswith("https") else None
                ) as client:
        for title, kind, parameters, config in kinds():
            out(f"== {title} ==")
            sid = f"demo-{kind.removeprefix('STRATEGY_KIND_').lower().replace('_', '-')}-" \
                  f"{uuid.uuid4().hex[:6]}"
            request(gw, token, "POST", f"/v1/strategies?strategyId={sid}",
                    {"displayName": f"Demo {title}", "kind": kind})
            version = request(gw, token, "POST", f"/v1/strategies/{sid}/versions",
                              {"parameters": parameters})
            out(f"  strategy version {version['name']} ({version['state']})")
            started = time.monotonic()
            last = run_backtest(gw, token, version["name"], config)
            done = last.get("completed")
            if not done:
                out("the stream ended without an outcome (cut): follow it with "
                    "`usdcarb backtest watch`")
                failed += 1
                continue
            if done["outcome"]["result"] != "RESULT_OK":
                out(f"backtest ended {done['outcome']['result']}: {done['outcome'].get('error')}")
                failed += 1
                continue
            show(done["result"], config["quoteAsset"], time.monotonic() - started)
            path = args.reports / f"{sid}.html"
            report(client, last["backtest"], path)
            out(f"  report: {path}  (or: usdcarb report {last['backtest']} -o FILE)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
