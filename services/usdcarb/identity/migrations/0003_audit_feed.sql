-- Calls the other services refused arrive through the Redis stream usdcarb:audit
-- (usdcarb.platform.audit); the stream entry id makes recording them idempotent, so an
-- entry delivered twice (a consumer died before acknowledging it) is recorded once.
ALTER TABLE audit_events ADD COLUMN source_id text;
CREATE UNIQUE INDEX audit_events_source ON audit_events (source_id) WHERE source_id IS NOT NULL;
