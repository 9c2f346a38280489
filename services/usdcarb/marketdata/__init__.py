"""Market data as arrays: the read path of the ``ingestion.market_data`` hypertable.

The ingestion service owns the table; the backtest and validation services read it
through this module (binary COPY parsed straight into numpy), never row by row, and
through the columnar block cache beside it (``cache.CandleCache``, ~10x faster warm).
"""
