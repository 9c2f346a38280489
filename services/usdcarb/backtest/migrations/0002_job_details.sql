-- What a worker needs to run a job without asking the strategy service again (versions
-- are immutable, so the kind and parameters resolved at creation stay right), the last
-- event sequence (so a watcher of a finished job gets the right number), and the
-- attempt/lease columns sweeps lacked (a sweep whose worker died is re-run too).
ALTER TABLE backtests
    ADD COLUMN strategy_kind  text   NOT NULL DEFAULT '',
    ADD COLUMN parameters     jsonb  NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN last_sequence  bigint NOT NULL DEFAULT 0;
CREATE INDEX backtests_state ON backtests (state, create_time DESC, id DESC);

ALTER TABLE sweeps
    ADD COLUMN strategy_kind  text        NOT NULL DEFAULT '',
    ADD COLUMN parameters     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN attempts       integer     NOT NULL DEFAULT 0,
    ADD COLUMN worker         text,
    ADD COLUMN start_time     timestamptz,
    ADD COLUMN last_sequence  bigint      NOT NULL DEFAULT 0;
CREATE INDEX sweeps_create_time ON sweeps (create_time DESC, id DESC);
