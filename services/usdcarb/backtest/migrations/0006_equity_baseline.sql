-- Issue 14: the hold baseline's equity beside each stored equity curve (EquityCurve.baseline):
-- 8 bytes (one little-endian float64) when it is constant, else the column in the stored
-- forms of colcodec.py; empty for curves stored before this migration.
ALTER TABLE backtest_equity ADD COLUMN baseline bytea NOT NULL DEFAULT ''::bytea;
