-- Series verdicts: spans of a series that are stale, aliased or suspect (a span without a
-- verdict is usable). Recomputed as data arrives: the spans overlapping a recomputed
-- range are replaced as a whole, under a per-series advisory lock.
CREATE TABLE series_verdicts (
    id           bigserial PRIMARY KEY,
    exchange     text             NOT NULL,
    symbol       text             NOT NULL,
    timeframe    text             NOT NULL,
    verdict      text             NOT NULL,
    start_time   timestamptz      NOT NULL,
    end_time     timestamptz      NOT NULL,
    bars         bigint           NOT NULL,
    reason       text             NOT NULL,
    twin         text             NOT NULL DEFAULT '',  -- "exchange:symbol" for ALIASED
    match_ratio  double precision NOT NULL DEFAULT 0,
    update_time  timestamptz      NOT NULL DEFAULT now(),
    CHECK (end_time > start_time)
);
CREATE INDEX series_verdicts_series ON series_verdicts (exchange, symbol, timeframe, start_time);

-- Verdict history: one row per span that appeared or went (the quality report's history).
CREATE TABLE series_verdict_changes (
    id           bigserial   PRIMARY KEY,
    exchange     text        NOT NULL,
    symbol       text        NOT NULL,
    timeframe    text        NOT NULL,
    change       text        NOT NULL CHECK (change IN ('added', 'removed')),
    verdict      text        NOT NULL,
    start_time   timestamptz NOT NULL,
    end_time     timestamptz NOT NULL,
    twin         text        NOT NULL DEFAULT '',
    reason       text        NOT NULL,
    change_time  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX series_verdict_changes_series
    ON series_verdict_changes (exchange, symbol, timeframe, change_time DESC);
