-- Market data (a TimescaleDB hypertable) and ingest jobs.
CREATE EXTENSION IF NOT EXISTS timescaledb WITH SCHEMA public;

CREATE TABLE market_data (
    exchange     text             NOT NULL,
    symbol       text             NOT NULL,
    timeframe    text             NOT NULL,
    ts           timestamptz      NOT NULL,
    open         double precision NOT NULL,
    high         double precision NOT NULL,
    low          double precision NOT NULL,
    close        double precision NOT NULL,
    volume       double precision NOT NULL,
    -- usdcarb.v1.Provenance number: 1 original, 2 filled from venue, 3 from timeframe.
    provenance   smallint         NOT NULL DEFAULT 1,
    source       text             NOT NULL DEFAULT '',
    ingest_time  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol, timeframe, ts),
    CHECK (high >= low AND open >= 0 AND low >= 0 AND volume >= 0)
);
SELECT create_hypertable('market_data', by_range('ts', INTERVAL '7 days'));

CREATE TABLE ingest_jobs (
    id           text PRIMARY KEY,
    exchange     text        NOT NULL,
    symbol       text        NOT NULL,
    timeframe    text        NOT NULL,
    mode         text        NOT NULL,
    start_time   timestamptz,
    end_time     timestamptz,
    state        text        NOT NULL DEFAULT 'JOB_STATE_QUEUED',
    progress     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    stats        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    cursor_time  timestamptz,
    error        jsonb,
    creator      text        NOT NULL DEFAULT '',
    request_id   text UNIQUE,
    -- A worker holds a job while lease_until is in the future; an expired lease means
    -- the worker died and another may resume the job from cursor_time.
    lease_owner  text,
    lease_until  timestamptz,
    create_time  timestamptz NOT NULL DEFAULT now(),
    update_time  timestamptz NOT NULL DEFAULT now(),
    finish_time  timestamptz
);
CREATE INDEX ingest_jobs_state ON ingest_jobs (state, create_time);
