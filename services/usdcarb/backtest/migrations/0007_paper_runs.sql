-- Paper runs (issue 18): a deployment's version traded forward on paper, bar by bar.
-- A bar is committed in ONE transaction: its row in paper_bars (the closes as the run saw
-- them, NaN for a market missing then), its fills, its equity point and the engine's
-- checkpoint in paper_runs, guarded by the lease holder and the bar count, so a runner
-- that lost its lease, or a bar already committed, can never be written twice.
CREATE TABLE paper_runs (
    deployment       text        PRIMARY KEY,   -- strategies/{s}/deployments/{d}
    strategy_version text        NOT NULL,
    strategy_kind    text        NOT NULL,
    parameters       jsonb       NOT NULL,
    config           bytea       NOT NULL,      -- usdcarb.v1.BacktestConfig
    series           jsonb       NOT NULL,      -- [[venue, symbol], ...], legs first
    timeframe        text        NOT NULL,
    bar_ms           bigint      NOT NULL CHECK (bar_ms > 0),
    start_ms         bigint      NOT NULL,      -- open time of bar 0
    stale_after_bars integer     NOT NULL CHECK (stale_after_bars >= 1),
    state            text        NOT NULL DEFAULT 'RUNNING'
                                 CHECK (state IN ('RUNNING', 'STOPPED', 'FAILED')),
    bars             bigint      NOT NULL DEFAULT 0,
    late_bars        bigint      NOT NULL DEFAULT 0,
    fills            bigint      NOT NULL DEFAULT 0,
    checkpoint       bytea,                     -- engine state after bar (bars - 1)
    equity           double precision,
    metrics          jsonb,
    balances         jsonb,
    error            jsonb,
    lease_owner      text,
    lease_until      timestamptz,
    creator          text        NOT NULL DEFAULT '',
    create_time      timestamptz NOT NULL DEFAULT now(),
    update_time      timestamptz NOT NULL DEFAULT now(),
    CHECK ((bars = 0) = (checkpoint IS NULL))
);
CREATE INDEX paper_runs_running ON paper_runs (lease_until) WHERE state = 'RUNNING';

CREATE TABLE paper_bars (
    deployment  text               NOT NULL REFERENCES paper_runs ON DELETE CASCADE,
    bar         bigint             NOT NULL,
    time_ms     bigint             NOT NULL,
    closes      double precision[] NOT NULL,
    volumes     double precision[] NOT NULL,
    missing     text[]             NOT NULL,   -- "venue:symbol" of markets absent then
    equity      double precision   NOT NULL,
    drawdown    double precision   NOT NULL,
    exposure    double precision   NOT NULL,
    commit_time timestamptz        NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (deployment, bar)
);

CREATE TABLE paper_fills (
    deployment      text             NOT NULL REFERENCES paper_runs ON DELETE CASCADE,
    seq             bigint           NOT NULL,  -- from 0, in fill order
    bar             bigint           NOT NULL,
    time_ms         bigint           NOT NULL,
    venue           text             NOT NULL,
    symbol          text             NOT NULL,
    side            smallint         NOT NULL,
    quantity        double precision NOT NULL,
    price           double precision NOT NULL,
    fee             double precision NOT NULL,
    slippage        double precision NOT NULL,
    round_trip      bigint           NOT NULL,
    signal_bar      bigint           NOT NULL,
    signal_edge_bps double precision NOT NULL,
    PRIMARY KEY (deployment, seq)
);
