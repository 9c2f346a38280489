"""``usdcarb data import``: the options become the ArchiveImport the service receives;
incomplete ones are refused locally (exit 2) before any call."""

from __future__ import annotations

import argparse

import pytest

from usdcarb.commands import data_import
from usdcarb.commands.common import UsageError
from usdcarb_sdk import v1

pytestmark = pytest.mark.unit


def args(*argv: str) -> argparse.Namespace:
    return data_import.parser().parse_args(list(argv))


def test_binance_spot_and_futures_options_become_the_import() -> None:
    spot = data_import.build_import(args("binance", "--symbol", "BTC/USDC", "--start",
                                         "2024-01-01", "--end", "2024-04-01", "--granularity",
                                         "daily", "--url", "http://127.0.0.1:9/dbv"))
    assert spot.source is not None and spot.series is not None and spot.range is not None
    assert spot.source.layout == v1.ArchiveLayout.BINANCE_SPOT
    assert spot.source.granularity == v1.ArchiveGranularity.DAILY
    assert spot.source.location == "http://127.0.0.1:9/dbv"
    assert (spot.series.exchange, spot.series.symbol, spot.series.timeframe) == (
        "binance", "BTC/USDC", "1m")
    assert spot.range.start_time is not None and spot.range.start_time.year == 2024
    fut = data_import.build_import(args("binance", "--futures", "--symbol", "BTC/USDT:USDT",
                                        "--start", "2024-03-01", "--end", "2024-03-08"))
    assert fut.source is not None and fut.series is not None
    assert fut.source.layout == v1.ArchiveLayout.BINANCE_USDM
    assert fut.series.exchange == "binanceusdm" and fut.source.location == ""


def test_kraken_takes_a_zip_url_or_a_server_path(tmp_path: object) -> None:
    k = data_import.build_import(args("kraken", "--symbol", "BTC/USDC", "--timeframe", "5m",
                                      "--path", "/srv/archives/Kraken_OHLCVT.zip"))
    assert k.source is not None and k.series is not None
    assert k.source.layout == v1.ArchiveLayout.KRAKEN_OHLCVT
    assert k.source.location == "file:///srv/archives/Kraken_OHLCVT.zip"
    assert k.series.exchange == "kraken" and k.range is None


@pytest.mark.parametrize("argv", [
    ("binance", "--symbol", "BTC/USDC"),  # no range
    ("kraken", "--symbol", "BTC/USDC"),  # no zip
    ("kraken", "--symbol", "BTC/USDC", "--url", "http://x/a.zip", "--path", "/a.zip"),
    ("kraken", "--symbol", "BTC/USDC", "--url", "http://x/a.zip", "--start", "2023-01-01"),
    ("binance", "--symbol", "BTC/USDC", "--start", "soon", "--end", "later"),
])
def test_incomplete_options_are_refused_locally(argv: tuple[str, ...]) -> None:
    with pytest.raises(UsageError):
        data_import.build_import(args(*argv))


def test_usage_errors_exit_2_without_calling_anything() -> None:
    assert data_import.main(["kraken", "--symbol", "BTC/USDC", "--gateway",
                             "http://127.0.0.1:9"]) == 2
