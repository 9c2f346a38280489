"""Exchange replay server: answers ccxt's real OHLCV requests from recorded market data.

The only stand-in for exchanges in tests, benchmarks and the demo (DESIGN.md, Tests):
ccxt is pointed at it by rewriting ``exchange.urls['api']`` to
``http://127.0.0.1:PORT/<original host>/<original path>``.
"""
