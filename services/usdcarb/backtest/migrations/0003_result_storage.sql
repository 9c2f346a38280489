-- Results of a million bars: store them as plain copies (see backtest/trade_columns.py).
-- Equity curves are raw little-endian arrays (~8 MB a column): they do not compress,
-- and trying cost most of a result's store time. Keep them out of line, uncompressed.
ALTER TABLE backtest_equity ALTER COLUMN time_ms SET STORAGE EXTERNAL,
    ALTER COLUMN equity SET STORAGE EXTERNAL, ALTER COLUMN drawdown SET STORAGE EXTERNAL,
    ALTER COLUMN exposure SET STORAGE EXTERNAL;

-- A result's trades as one row of column arrays (little-endian; venue and symbol as
-- uint16 indexes into venues/symbols): tens of thousands of fills stored as rows cost a
-- foreign-key check, an index entry and a tuple each. Uncompressed (EXTERNAL), so a
-- page read with substring() fetches only the chunks it needs. backtest_trades keeps
-- the trades of results stored before this migration.
CREATE TABLE backtest_trade_columns (
    backtest_id      text    PRIMARY KEY REFERENCES backtests (id) ON DELETE CASCADE,
    count            integer NOT NULL,
    venues           text[]  NOT NULL,
    symbols          text[]  NOT NULL,
    time_ms          bytea   NOT NULL,  -- int64 epoch ms
    venue            bytea   NOT NULL,  -- uint16
    symbol           bytea   NOT NULL,  -- uint16
    side             bytea   NOT NULL,  -- int8
    quantity         bytea   NOT NULL,  -- float64
    price            bytea   NOT NULL,  -- float64
    fee              bytea   NOT NULL,  -- float64
    slippage         bytea   NOT NULL,  -- float64
    round_trip       bytea   NOT NULL,  -- int64
    signal_bar       bytea   NOT NULL,  -- int64
    signal_edge_bps  bytea   NOT NULL   -- float64
);
ALTER TABLE backtest_trade_columns ALTER COLUMN time_ms SET STORAGE EXTERNAL,
    ALTER COLUMN venue SET STORAGE EXTERNAL, ALTER COLUMN symbol SET STORAGE EXTERNAL,
    ALTER COLUMN side SET STORAGE EXTERNAL, ALTER COLUMN quantity SET STORAGE EXTERNAL,
    ALTER COLUMN price SET STORAGE EXTERNAL, ALTER COLUMN fee SET STORAGE EXTERNAL,
    ALTER COLUMN slippage SET STORAGE EXTERNAL, ALTER COLUMN round_trip SET STORAGE EXTERNAL,
    ALTER COLUMN signal_bar SET STORAGE EXTERNAL,
    ALTER COLUMN signal_edge_bps SET STORAGE EXTERNAL;
