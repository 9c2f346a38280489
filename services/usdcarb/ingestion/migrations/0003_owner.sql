-- Owners (issue 9): the subject that created each ingest job; only it or an admin may
-- cancel it (usdcarb.platform.ownership). Jobs from before this migration keep an empty
-- owner, which no user matches: admin-only writes.
ALTER TABLE ingest_jobs ADD COLUMN owner text NOT NULL DEFAULT '';
