-- The ingestion follow jobs (INGEST_MODE_FOLLOW) of each paper run: one per market of
-- the run while it is RUNNING, created and cancelled by the backtest replica holding the
-- run (usdcarb.backtest.paper.follow). A job that ended on its own (FAILED) is replaced
-- by the next generation; once the run stops, any replica cancels what is still ACTIVE.
CREATE TABLE paper_follow_jobs (
    deployment  text        NOT NULL REFERENCES paper_runs ON DELETE CASCADE,
    exchange    text        NOT NULL,
    symbol      text        NOT NULL,
    timeframe   text        NOT NULL,
    generation  integer     NOT NULL CHECK (generation >= 1),
    job         text        NOT NULL,      -- ingestJobs/{id}
    state       text        NOT NULL DEFAULT 'ACTIVE'
                            CHECK (state IN ('ACTIVE', 'ENDED', 'STOPPED')),
    job_state   text,                      -- the ingest job's JobState when last read
    create_time timestamptz NOT NULL DEFAULT now(),
    end_time    timestamptz,
    PRIMARY KEY (deployment, exchange, symbol, generation)
);
CREATE INDEX paper_follow_jobs_active ON paper_follow_jobs (deployment) WHERE state = 'ACTIVE';
