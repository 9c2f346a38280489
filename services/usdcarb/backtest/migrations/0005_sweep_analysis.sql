-- Issue 14: purged, embargoed k-fold sweeps and what a finished sweep concludes about
-- overfitting. cross_validation is the request's CrossValidationSpec (proto3 JSON, NULL
-- for grid and walk-forward sweeps; a k-fold sweep stores its CrossValidationFold rows in
-- folds); analysis holds the deflated Sharpe ratio (grid) or the out-of-sample summary
-- (walk-forward, k-fold) as {"deflatedSharpe": ..., "outOfSample": ...}.
ALTER TABLE sweeps ADD COLUMN cross_validation jsonb;
ALTER TABLE sweeps ADD COLUMN analysis jsonb;
