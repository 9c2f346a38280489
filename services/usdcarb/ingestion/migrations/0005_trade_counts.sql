-- Trade counts per bar, where the source publishes them (Binance's kline archives,
-- Kraken's OHLCVT files); NULL for bars from sources without them (ccxt OHLCV, gap
-- fills). Additive: a nullable column, no rewrite of stored chunks.
ALTER TABLE market_data ADD COLUMN trades bigint;
