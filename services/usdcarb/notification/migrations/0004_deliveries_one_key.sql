-- A delivery's id is made from its event's key and its subscription (domain.delivery_id),
-- so the primary key already holds an event to one delivery per subscription, however
-- often it is consumed or appended; the second unique index on (event_id, subscription_id)
-- only cost an index entry on every insert and on every result written.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_event_id_subscription_id_key;
