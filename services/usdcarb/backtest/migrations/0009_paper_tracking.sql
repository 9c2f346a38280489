-- Paper runs tracked against their backtest (issue 18): the divergence bound of a run
-- (StartPaperRunRequest.max_divergence) and the state of its last check. ``diverged``
-- flips under a row lock, so the event of a crossing is published once.
CREATE TABLE paper_tracking (
    deployment     text             PRIMARY KEY REFERENCES paper_runs ON DELETE CASCADE,
    max_divergence double precision NOT NULL CHECK (max_divergence >= 0),
    diverged       boolean          NOT NULL DEFAULT false,
    difference     double precision,            -- |paper - backtest equity| at the check
    checked_bars   bigint           NOT NULL DEFAULT 0,
    check_time     timestamptz
);
