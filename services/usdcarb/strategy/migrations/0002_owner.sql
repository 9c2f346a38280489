-- Owners (issue 9): the subject that created each resource; only it or an admin may change
-- it (usdcarb.platform.ownership). Rows from before this migration keep an empty owner,
-- which no user matches: they are writable by admins (and granted services) only.
ALTER TABLE strategies  ADD COLUMN owner text NOT NULL DEFAULT '';
ALTER TABLE versions    ADD COLUMN owner text NOT NULL DEFAULT '';
ALTER TABLE deployments ADD COLUMN owner text NOT NULL DEFAULT '';
CREATE INDEX strategies_owner ON strategies (owner, create_time DESC, id DESC);
