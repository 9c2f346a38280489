-- Per-series gap repair policy, applied as recorded pages reveal gaps (absent row: OFF).
CREATE TABLE gap_policies (
    exchange         text        NOT NULL,
    symbol           text        NOT NULL,
    timeframe        text        NOT NULL,
    policy           text        NOT NULL,
    finer_timeframe  text        NOT NULL DEFAULT '',
    update_time      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol, timeframe)
);
