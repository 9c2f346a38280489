-- create_hypertable's default index on ts alone: no query of market_data uses it (every
-- read names the series and walks the primary key (exchange, symbol, timeframe, ts);
-- chunks are excluded by their time constraints), yet every COPY maintained it: a quarter
-- of PostgreSQL's CPU per bar in the ccxt pipeline (issue 17). Dropped on the hypertable,
-- TimescaleDB drops it on every chunk.
DROP INDEX IF EXISTS market_data_ts_idx;
