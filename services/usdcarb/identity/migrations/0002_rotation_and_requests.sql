-- Signing keys are published before they sign (zero-downtime rotation): activate_time.
ALTER TABLE signing_keys ADD COLUMN activate_time timestamptz NOT NULL DEFAULT now();
CREATE INDEX signing_keys_activate ON signing_keys (activate_time DESC);

-- Idempotency of CreateUser / CreateApiKey: a retried request_id returns the same
-- resource; for API keys the secret is kept encrypted for ten minutes, then erased.
CREATE TABLE request_ids (
    request_id   text PRIMARY KEY,
    method       text        NOT NULL,
    owner        text        NOT NULL,
    resource     text        NOT NULL,
    secret_enc   text,
    expire_time  timestamptz NOT NULL
);

CREATE INDEX audit_events_actor ON audit_events (actor, time DESC);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX api_keys_user ON api_keys (user_id, create_time DESC);
