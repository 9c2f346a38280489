-- Bulk archive imports (issue 17): one job per source (layout, location, series, range),
-- leased like ingest jobs; one row per archive file once it is settled. A file's bars, its
-- row here and the job's counters commit in ONE transaction, so a restarted import skips
-- exactly the files already stored (exactly once) and retries the rest.
CREATE TABLE archive_imports (
    id           text PRIMARY KEY,
    layout       text        NOT NULL,
    location     text        NOT NULL,
    exchange     text        NOT NULL,
    symbol       text        NOT NULL,
    market_id    text        NOT NULL,
    timeframe    text        NOT NULL,
    start_time   timestamptz,
    end_time     timestamptz,
    granularity  text        NOT NULL DEFAULT 'auto',
    state        text        NOT NULL DEFAULT 'JOB_STATE_QUEUED',
    progress     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    stats        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    error        jsonb,
    creator      text        NOT NULL DEFAULT '',
    owner        text        NOT NULL DEFAULT '',
    request_id   text UNIQUE,
    lease_owner  text,
    lease_until  timestamptz,
    version      bigint      NOT NULL DEFAULT 1,
    create_time  timestamptz NOT NULL DEFAULT now(),
    update_time  timestamptz NOT NULL DEFAULT now(),
    finish_time  timestamptz
);
CREATE INDEX archive_imports_claim ON archive_imports (state, lease_until);
CREATE INDEX archive_imports_list ON archive_imports (create_time DESC, id DESC);

CREATE TABLE archive_files (
    import_id        text        NOT NULL REFERENCES archive_imports (id) ON DELETE CASCADE,
    key              text        NOT NULL,
    location         text        NOT NULL,
    state            text        NOT NULL CHECK (state IN ('STORED', 'FAILED')),
    bars_read        bigint      NOT NULL DEFAULT 0,
    bars_stored      bigint      NOT NULL DEFAULT 0,
    bars_duplicate   bigint      NOT NULL DEFAULT 0,
    bars_quarantined bigint      NOT NULL DEFAULT 0,
    bytes            bigint      NOT NULL DEFAULT 0,
    sha256           text        NOT NULL DEFAULT '',
    reason           text        NOT NULL DEFAULT '',
    message          text        NOT NULL DEFAULT '',
    seq              bigint      NOT NULL,
    update_time      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (import_id, key)
);
