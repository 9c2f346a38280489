-- Strategies, their immutable content-addressed versions, lifecycle history and deployments.
CREATE TABLE strategies (
    id             text PRIMARY KEY,
    display_name   text        NOT NULL,
    description    text        NOT NULL DEFAULT '',
    kind           text        NOT NULL,
    labels         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    creator        text        NOT NULL DEFAULT '',
    create_time    timestamptz NOT NULL DEFAULT now(),
    update_time    timestamptz NOT NULL DEFAULT now(),
    etag           text        NOT NULL,
    version_count  integer     NOT NULL DEFAULT 0
);
CREATE INDEX strategies_create_time ON strategies (create_time DESC, id DESC);

CREATE TABLE versions (
    strategy_id     text        NOT NULL REFERENCES strategies (id) ON DELETE CASCADE,
    version_id      text        NOT NULL,
    sequence        integer     NOT NULL,
    parameters      jsonb       NOT NULL,
    canonical       text        NOT NULL,
    content_hash    text        NOT NULL,
    description     text        NOT NULL DEFAULT '',
    state           text        NOT NULL DEFAULT 'VERSION_STATE_DRAFT',
    creator         text        NOT NULL DEFAULT '',
    create_time     timestamptz NOT NULL DEFAULT now(),
    state_time      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (strategy_id, version_id),
    UNIQUE (strategy_id, sequence)
);

CREATE TABLE version_transitions (
    id           bigserial PRIMARY KEY,
    strategy_id  text        NOT NULL,
    version_id   text        NOT NULL,
    from_state   text        NOT NULL,
    to_state     text        NOT NULL,
    reason       text        NOT NULL DEFAULT '',
    actor        text        NOT NULL DEFAULT '',
    time         timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (strategy_id, version_id) REFERENCES versions ON DELETE CASCADE
);

CREATE TABLE deployments (
    strategy_id   text        NOT NULL REFERENCES strategies (id) ON DELETE CASCADE,
    id            text        NOT NULL,
    version_id    text        NOT NULL,
    environment   text        NOT NULL,
    state         text        NOT NULL DEFAULT 'DEPLOYMENT_STATE_ACTIVE',
    notes         text        NOT NULL DEFAULT '',
    creator       text        NOT NULL DEFAULT '',
    create_time   timestamptz NOT NULL DEFAULT now(),
    stop_time     timestamptz,
    PRIMARY KEY (strategy_id, id),
    FOREIGN KEY (strategy_id, version_id) REFERENCES versions
);

-- Idempotency keys of create requests: a retry returns the first result.
CREATE TABLE request_ids (
    request_id    text PRIMARY KEY,
    method        text        NOT NULL,
    resource      text        NOT NULL,
    create_time   timestamptz NOT NULL DEFAULT now()
);
