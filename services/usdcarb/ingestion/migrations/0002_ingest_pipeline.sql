-- Ingest pipeline: job versions for watch streams, what ingestion refused to store, and
-- the lookups the worker and ListMarkets make.
--
-- Staging for COPY is a per-connection TEMP table (created by the store on first use,
-- ON COMMIT DELETE ROWS) rather than a shared table here: concurrent workers then never
-- see or delete each other's rows, and nothing is WAL-logged twice.

-- Bumped on every change of a job; WatchIngestJob uses it as the event sequence.
ALTER TABLE ingest_jobs ADD COLUMN version bigint NOT NULL DEFAULT 1;
CREATE INDEX ingest_jobs_claim ON ingest_jobs (state, lease_until);
CREATE INDEX ingest_jobs_exchange ON ingest_jobs (exchange, create_time DESC, id DESC);

-- Bars a job did not store because validation rejected them, with the reason: nothing
-- received is dropped silently (the validation service keeps its own quarantine too).
CREATE TABLE ingest_rejects (
    id           bigserial PRIMARY KEY,
    job_id       text             NOT NULL,
    exchange     text             NOT NULL,
    symbol       text             NOT NULL,
    timeframe    text             NOT NULL,
    open_time_ms bigint           NOT NULL,
    open         double precision,
    high         double precision,
    low          double precision,
    close        double precision,
    volume       double precision,
    rules        text[]           NOT NULL,
    reason       text             NOT NULL,
    create_time  timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX ingest_rejects_series ON ingest_rejects (exchange, symbol, timeframe, open_time_ms);

-- Columnar cache of market data for fast reads: one row per series and block of
-- BLOCK_SLOTS bar slots, each column as little-endian array bytes (ingestion/candle_cache.py).
-- A block is only ever a copy of market_data: writers delete the blocks they touch
-- (usdcarb.marketdata.writer.invalidate_blocks, then set usdcarb.blocks_touched); any
-- other write to market_data drops every block through the statement trigger below.
CREATE TABLE candle_blocks (
    exchange     text        NOT NULL,
    symbol       text        NOT NULL,
    timeframe    text        NOT NULL,
    block_start  bigint      NOT NULL,  -- epoch ms of the block's first slot
    n            integer     NOT NULL,
    ts           bytea       NOT NULL,
    open         bytea       NOT NULL,
    high         bytea       NOT NULL,
    low          bytea       NOT NULL,
    close        bytea       NOT NULL,
    volume       bytea       NOT NULL,
    provenance   bytea       NOT NULL,
    build_time   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol, timeframe, block_start)
);
-- Raw arrays do not compress; storing them uncompressed makes reads a plain copy.
ALTER TABLE candle_blocks ALTER COLUMN ts SET STORAGE EXTERNAL,
    ALTER COLUMN open SET STORAGE EXTERNAL, ALTER COLUMN high SET STORAGE EXTERNAL,
    ALTER COLUMN low SET STORAGE EXTERNAL, ALTER COLUMN close SET STORAGE EXTERNAL,
    ALTER COLUMN volume SET STORAGE EXTERNAL, ALTER COLUMN provenance SET STORAGE EXTERNAL;

-- Once per statement (cheap; a row trigger would double the cost of every write): a
-- write that did not invalidate its own blocks drops them all, after taking the shared
-- side of the advisory lock a block builder holds exclusively (see candle_cache.py).
CREATE FUNCTION candle_blocks_guard() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF coalesce(current_setting('usdcarb.blocks_touched', true), '') <> 'on' THEN
        PERFORM pg_advisory_xact_lock_shared(7216372948311501);
        DELETE FROM candle_blocks;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER market_data_candle_blocks AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON market_data FOR EACH STATEMENT EXECUTE FUNCTION candle_blocks_guard();
