"""What the CLI and Go SDK tests share: the demo's days and series."""

START, END = "2023-03-10", "2023-03-13"
# The committed replay samples (services/usdcarb/replay/samples) of the three kinds.
SERIES = [("binance", "BTC/USDC"), ("binance", "BTC/USDT"), ("binance", "USDC/USDT"),
          ("bybit", "BTC/USDC")]
