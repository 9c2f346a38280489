-- Channels, subscriptions and deliveries (with dead letters).
CREATE TABLE channels (
    id            text PRIMARY KEY,
    display_name  text        NOT NULL,
    kind          text        NOT NULL CHECK (kind IN ('webhook', 'email')),
    config        jsonb       NOT NULL,
    -- Webhook HMAC secret: needed in clear to sign, so it is never returned by the API.
    secret        text,
    owner         text        NOT NULL DEFAULT '',
    request_id    text UNIQUE,
    create_time   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE subscriptions (
    id              text PRIMARY KEY,
    channel_id      text        NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    event_types     text[]      NOT NULL DEFAULT '{}',
    min_severity    text        NOT NULL DEFAULT 'SEVERITY_UNSPECIFIED',
    subject_prefix  text        NOT NULL DEFAULT '',
    enabled         boolean     NOT NULL DEFAULT true,
    owner           text        NOT NULL DEFAULT '',
    request_id      text UNIQUE,
    create_time     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE deliveries (
    id                 text PRIMARY KEY,
    channel_id         text        NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    subscription_id    text,
    event_id           text        NOT NULL,
    event              jsonb       NOT NULL,
    state              text        NOT NULL DEFAULT 'DELIVERY_STATE_PENDING',
    attempts           integer     NOT NULL DEFAULT 0,
    response_code      integer     NOT NULL DEFAULT 0,
    last_error         text        NOT NULL DEFAULT '',
    create_time        timestamptz NOT NULL DEFAULT now(),
    end_time           timestamptz,
    next_attempt_time  timestamptz,
    -- An event is delivered once per subscription, however often it is consumed.
    UNIQUE (event_id, subscription_id)
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_time);
