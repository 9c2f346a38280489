"""Each exchange's market-list endpoints (what ccxt's ``load_markets`` calls, spot only,
no API keys), in the exchange's own response format, listing the markets the replay
catalogue has recorded data for.

* binance ``/api/v3/exchangeInfo``; bybit ``/v5/market/instruments-info?category=spot``;
  okx ``/api/v5/public/instruments?instType=SPOT``;
* kraken ``/0/public/Assets`` and ``/0/public/AssetPairs``;
* coinbase ``/v2/currencies``, ``/v2/currencies/crypto``, ``/v2/exchange-rates`` and
  ``/api/v3/brokerage/market/products`` (``?product_type=FUTURE``: none).

Fields are the ones ccxt 4.5.90 parses; precisions and limits are the exchanges' usual
values for these markets (the recordings carry none).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from usdcarb.replay.formats import Reply

# Kraken's asset ids (what AssetPairs' base/quote name).
_KRAKEN_ASSET = {"BTC": "XXBT", "USD": "ZUSD", "USDC": "USDC", "USDT": "USDT"}


def _json(obj: object) -> Reply:
    return Reply(200, json.dumps(obj, separators=(",", ":")).encode())


def _split(symbol: str) -> tuple[str, str]:
    base, quote = symbol.split("/")
    return base, quote


def _dec(base: str) -> tuple[str, str]:
    """(price tick, amount step) as decimal strings."""
    return ("0.01", "0.00001") if base == "BTC" else ("0.0001", "0.01")


def _binance(ids: Mapping[str, str]) -> Reply:
    symbols = []
    for mid, sym in ids.items():
        base, quote = _split(sym)
        tick, step = _dec(base)
        symbols.append({
            "symbol": mid, "status": "TRADING", "baseAsset": base, "baseAssetPrecision": 8,
            "quoteAsset": quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
            "orderTypes": ["LIMIT", "MARKET"], "icebergAllowed": True, "ocoAllowed": True,
            "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
            "permissions": ["SPOT"], "permissionSets": [["SPOT"]],
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00",
                 "tickSize": tick},
                {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "9000.00",
                 "stepSize": step},
                {"filterType": "NOTIONAL", "minNotional": "5.00", "maxNotional": "9000000"},
            ]})
    return _json({"timezone": "UTC", "serverTime": 0, "rateLimits": [], "symbols": symbols})


def _bybit(ids: Mapping[str, str]) -> Reply:
    rows = []
    for mid, sym in ids.items():
        base, quote = _split(sym)
        tick, step = _dec(base)
        rows.append({"symbol": mid, "baseCoin": base, "quoteCoin": quote, "innovation": "0",
                     "status": "Trading", "marginTrading": "none",
                     "lotSizeFilter": {"basePrecision": step, "quotePrecision": "0.0001",
                                       "minOrderQty": step, "maxOrderQty": "9000",
                                       "minOrderAmt": "1", "maxOrderAmt": "9000000"},
                     "priceFilter": {"tickSize": tick}})
    return _json({"retCode": 0, "retMsg": "OK",
                  "result": {"category": "spot", "list": rows}, "retExtInfo": {}, "time": 0})


def _okx(ids: Mapping[str, str]) -> Reply:
    rows = []
    for mid, sym in ids.items():
        base, quote = _split(sym)
        tick, step = _dec(base)
        rows.append({"instType": "SPOT", "instId": mid, "instFamily": "", "uly": "",
                     "baseCcy": base, "quoteCcy": quote, "settleCcy": "", "ctVal": "",
                     "ctMult": "", "ctValCcy": "", "optType": "", "stk": "", "listTime": "",
                     "expTime": "", "lever": "", "tickSz": tick, "lotSz": step,
                     "minSz": step, "ctType": "", "alias": "", "state": "live",
                     "maxLmtSz": "9000", "maxMktSz": "9000"})
    return _json({"code": "0", "msg": "", "data": rows})


def _kraken_pairs(ids: Mapping[str, str]) -> Reply:
    result = {}
    for mid, sym in ids.items():
        base, quote = _split(sym)
        result[mid] = {
            "altname": mid.replace("XXBTZ", "XBT"), "wsname": sym.replace("BTC", "XBT"),
            "aclass_base": "currency", "base": _KRAKEN_ASSET[base], "aclass_quote": "currency",
            "quote": _KRAKEN_ASSET[quote], "lot": "unit",
            "pair_decimals": 1 if base == "BTC" else 4, "lot_decimals": 8,
            "cost_decimals": 5, "lot_multiplier": 1, "leverage_buy": [], "leverage_sell": [],
            "fees": [[0, 0.26]], "fees_maker": [[0, 0.16]], "fee_volume_currency": "ZUSD",
            "margin_call": 80, "margin_stop": 40, "ordermin": "0.0001", "costmin": "0.5",
            "tick_size": "0.1" if base == "BTC" else "0.0001", "status": "online"}
    return _json({"error": [], "result": result})


def _kraken_assets(ids: Mapping[str, str]) -> Reply:
    codes = {c for sym in ids.values() for c in _split(sym)}
    result = {_KRAKEN_ASSET[c]: {"aclass": "currency",
                                 "altname": "XBT" if c == "BTC" else c,
                                 "decimals": 10 if c == "BTC" else 8,
                                 "display_decimals": 5 if c == "BTC" else 4,
                                 "status": "enabled"} for c in sorted(codes)}
    return _json({"error": [], "result": result})


def _coinbase_products(ids: Mapping[str, str]) -> Reply:
    rows = []
    for mid, sym in ids.items():
        base, quote = _split(sym)
        tick, step = _dec(base)
        rows.append({"product_id": mid, "price": "0", "price_percentage_change_24h": "0",
                     "volume_24h": "0", "volume_percentage_change_24h": "0",
                     "base_increment": step, "quote_increment": tick,
                     "quote_min_size": "1", "quote_max_size": "10000000",
                     "base_min_size": step, "base_max_size": "9000",
                     "base_name": base, "quote_name": quote, "watched": False,
                     "is_disabled": False, "new": False, "status": "online",
                     "cancel_only": False, "limit_only": False, "post_only": False,
                     "trading_disabled": False, "auction_mode": False, "product_type": "SPOT",
                     "quote_currency_id": quote, "base_currency_id": base,
                     "fcm_trading_session_details": None, "mid_market_price": "",
                     "alias": "", "alias_to": [], "base_display_symbol": base,
                     "quote_display_symbol": quote, "view_only": False,
                     "price_increment": tick, "display_name": mid,
                     "product_venue": "CBE"})
    return _json({"products": rows, "num_products": len(rows)})


def _coinbase_currencies(ids: Mapping[str, str], crypto: bool) -> Reply:
    codes = sorted({c for sym in ids.values() for c in _split(sym)})
    fiat = {"USD"}
    if crypto:
        data = [{"asset_id": c, "code": c, "name": c, "color": "", "sort_index": i,
                 "exponent": 8, "type": "crypto", "address_regex": ""}
                for i, c in enumerate(codes) if c not in fiat]
    else:
        data = [{"id": c, "name": c, "min_size": "0.01"} for c in codes if c in fiat]
    return _json({"data": data})


def markets_reply(exchange_id: str, path: str, params: Mapping[str, str],
                  ids: Mapping[str, str]) -> Reply | None:
    """The market-list response for ``path``, or None if it is not one; ``ids`` maps
    the exchange's market ids to unified symbols (the recorded markets)."""
    if exchange_id == "binance" and path == "/api/v3/exchangeInfo":
        return _binance(ids)
    if exchange_id == "bybit" and path == "/v5/market/instruments-info":
        return _bybit(ids if params.get("category") == "spot" else {})
    if exchange_id == "okx" and path == "/api/v5/public/instruments":
        return _okx(ids if params.get("instType") == "SPOT" else {})
    if exchange_id == "kraken" and path == "/0/public/AssetPairs":
        return _kraken_pairs(ids)
    if exchange_id == "kraken" and path == "/0/public/Assets":
        return _kraken_assets(ids)
    if exchange_id == "coinbase":
        if path == "/api/v3/brokerage/market/products":
            return _coinbase_products(ids if params.get("product_type", "SPOT") == "SPOT"
                                      else {})
        if path in ("/v2/currencies", "/v2/currencies/crypto"):
            return _coinbase_currencies(ids, crypto=path.endswith("crypto"))
        if path == "/v2/exchange-rates":
            codes = sorted({c for sym in ids.values() for c in _split(sym)})
            return _json({"data": {"currency": "USD", "rates": dict.fromkeys(codes, "1")}})
    return None


def recorded_ids(markets: Mapping[str, str], recorded: Iterable[str]) -> dict[str, str]:
    """The exchange's market ids whose unified symbol has recorded data."""
    have = set(recorded)
    return {mid: sym for mid, sym in markets.items() if sym in have}
