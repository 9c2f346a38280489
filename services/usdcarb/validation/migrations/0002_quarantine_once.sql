-- Quarantining the same bar twice (re-validating a page) records it once; copies that
-- differ in any value stay distinct rows. NaN equals NaN in a btree, so bars with NaN
-- values deduplicate too.
CREATE UNIQUE INDEX quarantined_bars_once
    ON quarantined_bars (exchange, symbol, timeframe, open_time_ms, open, high, low, close, volume)
    NULLS NOT DISTINCT;
-- Listings go newest first.
CREATE INDEX data_gaps_series ON data_gaps (exchange, symbol, timeframe, start_time DESC);
