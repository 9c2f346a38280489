-- Leases are claimed per channel: the oldest due rows of each channel that has room, one
-- short index range per channel, instead of a window over the oldest due rows of all
-- channels (which walked past every row of the channels without room, ever longer as a
-- backlog grew). Without deduplication, an index entry of a row that left PENDING is
-- marked dead the first time a claim walks past it (a posting list of rows inserted by
-- one statement, which share next_attempt_time, is only marked once all of them are).
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (channel_id, next_attempt_time)
    WITH (deduplicate_items = off) WHERE state = 'DELIVERY_STATE_PENDING';
ALTER TABLE deliveries SET (fillfactor = 70);
