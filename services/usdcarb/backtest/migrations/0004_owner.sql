-- Owners (issue 9): the subject that created each job; only it or an admin may cancel it
-- (usdcarb.platform.ownership). Written once by the INSERT, never updated. Jobs from before
-- this migration keep an empty owner, which no user matches: admin-only writes.
ALTER TABLE backtests ADD COLUMN owner text NOT NULL DEFAULT '';
ALTER TABLE sweeps    ADD COLUMN owner text NOT NULL DEFAULT '';
