-- Secret rotation, delivery leases (a dead replica's in-flight deliveries are retried by
-- another once the lease ends) and the indexes the engine and the listings read.
ALTER TABLE channels ADD COLUMN previous_secret text;
ALTER TABLE channels ADD COLUMN previous_secret_expire_time timestamptz;

ALTER TABLE deliveries ADD COLUMN lease_owner text;
ALTER TABLE deliveries ADD COLUMN lease_until timestamptz;

DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (next_attempt_time)
    WHERE state = 'DELIVERY_STATE_PENDING';
CREATE INDEX deliveries_by_channel ON deliveries (channel_id, create_time DESC, id DESC);
CREATE INDEX channels_by_owner ON channels (owner, create_time DESC, id DESC);
CREATE INDEX subscriptions_by_channel ON subscriptions (channel_id);
