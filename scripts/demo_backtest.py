"""Demo: a real cross-exchange spread backtest through the gateway, streamed live.

    python scripts/demo_backtest.py [--gateway https://localhost:8080] [--cacert CA]

The gateway is called over HTTPS trusting the local stack's dev CA
(``.run/stack/tls/ca.pem``, or ``$USDCARB_CA_FILE``).

1. Ingests the demo market data through the platform itself: ``usdcarb backfill`` jobs
   (gateway → ingestion → ccxt → the exchange replay server serving the committed
   samples, validated page by page) for BTC/USDC on Binance.US and Bybit, 10-13 March
   2023, the days of the USDC depeg when the two venues' BTC/USDC prices parted by up
   to 11%.
2. Creates a cross-exchange-spread strategy and a version over REST.
3. Runs the backtest with ``POST /v1/backtests:run`` and prints the NDJSON progress
   stream as it arrives (a progress bar), then the final metrics.
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
    for venue in VENUES:
        out(f"  backfill {venue} {SYMBOL} 1m {START[:10]} .. {END[:10]}")
        subprocess.run(
            [sys.executable, "-m", "usdcarb", "backfill", "--exchange", venue, "--symbol", SYMBOL,
             "--start", START, "--end", END, "--gateway", gateway,
             "--token", token], check=True)


def bar(fraction: float, width: int = 40) -> str:
    filled = round(fraction * width)
    return "[" + "#" * filled + "-" * (width - filled) + f"] {fraction:6.1%}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", default=os.environ.get(
        "USDCARB_GATEWAY", f"https://localhost:{os.environ.get('USDCARB_GATEWAY_PORT', '8080')}"))
    parser.add_argument("--cacert", default=os.environ.get(
        "USDCARB_CA_FILE", str(REPO / ".run/stack/tls/ca.pem")), help="CA to trust (PEM)")
    args = parser.parse_args(argv)
    if args.gateway.startswith("https://"):
        # Every HTTPS call here (and the backfill CLI it runs) trusts the stack's dev CA.
        context = ssl.create_default_context(cafile=args.cacert)
        urllib.request.install_opener(
            urllib.request.build_opener(urllib.request.HTTPSHandler(context=context)))
        os.environ["USDCARB_CA_FILE"] = args.cacert
    from usdcarb.gateway.devtoken import mint_dev_token

    token = mint_dev_token("demo-trader", ["trader"])
    gw = args.gateway.rstrip("/")
    out(f"== backtest demo: cross-exchange spread {SYMBOL}, {VENUES[0]} vs {VENUES[1]} ==")
    ingest(gw, token)
    sid = f"demo-spread-{uuid.uuid4().hex[:6]}"
    request(gw, token, "POST", f"/v1/strategies?strategyId={sid}", {
        "displayName": "Demo BTC/USDC spread", "kind": "STRATEGY_KIND_CROSS_EXCHANGE_SPREAD"})
    version = request(gw, token, "POST", f"/v1/strategies/{sid}/versions", {"parameters": {
        "crossExchangeSpread": {"symbol": SYMBOL, "venueA": VENUES[0], "venueB": VENUES[1],
                                "entryBps": 60, "exitBps": 5, "quantity": 0.5,
                                "maxHoldingBars": 720}}})
    out(f"  strategy version {version['name']} ({version['state']})")
    balances = [{"asset": "BTC", "amount": 5}, {"asset": "USDC", "amount": 200_000}]
    body = {"strategyVersion": version["name"], "progressInterval": "0.05s",
            "requestId": str(uuid.uuid4()), "config": {
                "range": {"startTime": START, "endTime": END}, "timeframe": "1m",
                "fillPolicy": "FILL_POLICY_NEXT_BAR", "quoteAsset": "USDC",
                "venues": [
                    {"venue": "binance", "takerFeeBps": 10, "makerFeeBps": 10,
                     "slippage": {"fixedBps": 2}, "initialBalances": balances},
                    {"venue": "bybit", "takerFeeBps": 10, "makerFeeBps": 10,
                     "slippage": {"fixedBps": 2}, "initialBalances": balances}],
                "transfers": [{"fromVenue": a, "toVenue": b, "asset": asset, "fee": fee,
                               "delayBars": 30}
                              for a, b in (VENUES, VENUES[::-1])
                              for asset, fee in (("BTC", 0.0002), ("USDC", 1))]}}
    req = urllib.request.Request(
        gw + "/v1/backtests:run", method="POST", data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    started = time.monotonic()
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
    done = last.get("completed")
    if not done:
        out("the stream ended without an outcome (cut): follow it with WatchBacktest")
        return 1
    if done["outcome"]["result"] != "RESULT_OK":
        out(f"backtest ended {done['outcome']['result']}: {done['outcome'].get('error')}")
        return 1
    r = done["result"]
    m = r["metrics"]
    out(f"  finished in {time.monotonic() - started:.2f}s (engine {r.get('elapsed')}), "
        f"{r['bars']} bars, {r['tradeCount']} fills, fingerprint {r['fingerprint']['digest'][:16]}")
    rows = [("total return", f"{m.get('totalReturn', 0):.4%}"),
            ("annualised return", f"{m.get('annualizedReturn', 0):.4%}"),
            ("Sharpe / Sortino", f"{m.get('sharpe', 0):.3f} / {m.get('sortino', 0):.3f}"),
            ("max drawdown", f"{m.get('maxDrawdown', 0):.4%} over {m.get('maxDrawdownDuration', '0s')}"),
            ("round trips / win rate", f"{m.get('roundTrips', 0)} / {m.get('winRate', 0):.1%}"),
            ("profit factor / expectancy", f"{float(m.get('profitFactor', 0)):.3f} / {m.get('expectancy', 0):.2f} USDC"),
            ("fees / slippage paid", f"{m.get('feesPaid', 0):,.2f} / {m.get('slippagePaid', 0):,.2f} USDC"),
            ("theoretical / realised edge", f"{m.get('theoreticalEdgeBps', 0):.2f} / {m.get('realizedEdgeBps', 0):.2f} bps"),
            ("capture rate", f"{m.get('captureRate', 0):.3f}"),
            ("exposure / turnover", f"{m.get('exposure', 0):.3%} / {m.get('turnover', 0):.3f}"),
            ("rejected fills", f"{m.get('rejectedFills', 0)}"),
            ("inventory utilisation", ", ".join(
                f"{k} {v:.2%}" for k, v in sorted(m.get("inventoryUtilization", {}).items())))]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out(f"  {key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
