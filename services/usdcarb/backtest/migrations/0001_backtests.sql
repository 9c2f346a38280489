-- Backtest jobs, results (trades, equity curves) and sweeps.
CREATE TABLE backtests (
    id                  text PRIMARY KEY,
    strategy_version    text        NOT NULL,
    config              jsonb       NOT NULL,
    state               text        NOT NULL DEFAULT 'JOB_STATE_QUEUED',
    progress            jsonb       NOT NULL DEFAULT '{}'::jsonb,
    result              jsonb,
    error               jsonb,
    fingerprint_digest  text,
    creator             text        NOT NULL DEFAULT '',
    request_id          text UNIQUE,
    attempts            integer     NOT NULL DEFAULT 0,
    worker              text,
    create_time         timestamptz NOT NULL DEFAULT now(),
    start_time          timestamptz,
    end_time            timestamptz
);
CREATE INDEX backtests_create_time ON backtests (create_time DESC, id DESC);
CREATE INDEX backtests_version ON backtests (strategy_version);

CREATE TABLE backtest_trades (
    backtest_id      text             NOT NULL REFERENCES backtests (id) ON DELETE CASCADE,
    seq              integer          NOT NULL,
    time             timestamptz      NOT NULL,
    venue            text             NOT NULL,
    symbol           text             NOT NULL,
    side             smallint         NOT NULL,
    quantity         double precision NOT NULL,
    price            double precision NOT NULL,
    fee              double precision NOT NULL,
    slippage         double precision NOT NULL,
    round_trip       bigint           NOT NULL,
    signal_bar       bigint           NOT NULL,
    signal_edge_bps  double precision NOT NULL,
    PRIMARY KEY (backtest_id, seq)
);

-- Equity curves stored column by column as little-endian arrays (int64 ms, float64).
CREATE TABLE backtest_equity (
    backtest_id  text PRIMARY KEY REFERENCES backtests (id) ON DELETE CASCADE,
    points       bigint NOT NULL,
    time_ms      bytea  NOT NULL,
    equity       bytea  NOT NULL,
    drawdown     bytea  NOT NULL,
    exposure     bytea  NOT NULL
);

CREATE TABLE sweeps (
    id                text PRIMARY KEY,
    strategy_version  text        NOT NULL,
    config            jsonb       NOT NULL,
    axes              jsonb       NOT NULL,
    objective         text        NOT NULL DEFAULT 'sharpe',
    walk_forward      jsonb,
    state             text        NOT NULL DEFAULT 'JOB_STATE_QUEUED',
    progress          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    points            jsonb,
    folds             jsonb,
    error             jsonb,
    creator           text        NOT NULL DEFAULT '',
    request_id        text UNIQUE,
    create_time       timestamptz NOT NULL DEFAULT now(),
    end_time          timestamptz
);
