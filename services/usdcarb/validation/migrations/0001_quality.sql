-- Validation findings, quarantined bars and gaps.
CREATE TABLE data_validation_issues (
    id           bigserial PRIMARY KEY,
    exchange     text             NOT NULL,
    symbol       text             NOT NULL,
    timeframe    text             NOT NULL,
    bar_time     timestamptz,
    rule         text             NOT NULL,
    scope        text             NOT NULL,
    severity     text             NOT NULL,
    message      text             NOT NULL,
    value        double precision,
    threshold    double precision,
    detect_time  timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX data_validation_issues_series
    ON data_validation_issues (exchange, symbol, timeframe, bar_time DESC);
-- One finding per rule per bar: re-validating a range does not duplicate findings.
CREATE UNIQUE INDEX data_validation_issues_once
    ON data_validation_issues (exchange, symbol, timeframe, rule, bar_time) NULLS NOT DISTINCT;

CREATE TABLE quarantined_bars (
    id               bigserial PRIMARY KEY,
    exchange         text             NOT NULL,
    symbol           text             NOT NULL,
    timeframe        text             NOT NULL,
    open_time_ms     bigint           NOT NULL,
    open             double precision,
    high             double precision,
    low              double precision,
    close            double precision,
    volume           double precision,
    rules            text[]           NOT NULL,
    reason           text             NOT NULL,
    quarantine_time  timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX quarantined_bars_series ON quarantined_bars (exchange, symbol, timeframe, open_time_ms);

CREATE TABLE data_gaps (
    id            bigserial PRIMARY KEY,
    exchange      text        NOT NULL,
    symbol        text        NOT NULL,
    timeframe     text        NOT NULL,
    start_time    timestamptz NOT NULL,
    end_time      timestamptz NOT NULL,
    missing_bars  bigint      NOT NULL,
    state         text        NOT NULL DEFAULT 'GAP_STATE_OPEN',
    filled_bars   bigint      NOT NULL DEFAULT 0,
    filled_from   text[]      NOT NULL DEFAULT '{}',
    detect_time   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (exchange, symbol, timeframe, start_time),
    CHECK (end_time > start_time)
);
