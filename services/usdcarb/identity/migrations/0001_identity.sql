-- Users, roles, API keys, refresh tokens, signing keys and the audit log.
CREATE TABLE roles (
    name         text PRIMARY KEY,
    description  text NOT NULL
);
INSERT INTO roles (name, description) VALUES
    ('viewer',  'Reads data, strategies and results.'),
    ('analyst', 'Also creates strategies, versions, backtests and sweeps.'),
    ('trader',  'Also ingests data, approves and deploys versions.'),
    ('admin',   'Everything, including users, keys and the audit log.');

CREATE TABLE users (
    id               text PRIMARY KEY,
    username         text        NOT NULL UNIQUE,
    display_name     text        NOT NULL DEFAULT '',
    email            text        NOT NULL DEFAULT '',
    password_hash    text        NOT NULL,
    disabled         boolean     NOT NULL DEFAULT false,
    failed_logins    integer     NOT NULL DEFAULT 0,
    locked_until     timestamptz,
    create_time      timestamptz NOT NULL DEFAULT now(),
    last_login_time  timestamptz
);

CREATE TABLE user_roles (
    user_id  text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role     text NOT NULL REFERENCES roles (name),
    PRIMARY KEY (user_id, role)
);

CREATE TABLE api_keys (
    id              text PRIMARY KEY,
    user_id         text        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    display_name    text        NOT NULL,
    prefix          text        NOT NULL,
    secret_hash     text        NOT NULL UNIQUE,
    roles           text[]      NOT NULL,
    expire_time     timestamptz NOT NULL,
    revoke_time     timestamptz,
    create_time     timestamptz NOT NULL DEFAULT now(),
    last_used_time  timestamptz
);

CREATE TABLE refresh_tokens (
    id           text PRIMARY KEY,
    family_id    text        NOT NULL,
    user_id      text        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash   text        NOT NULL UNIQUE,
    issue_time   timestamptz NOT NULL DEFAULT now(),
    expire_time  timestamptz NOT NULL,
    use_time     timestamptz,
    revoke_time  timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE signing_keys (
    kid          text PRIMARY KEY,
    private_pem  text        NOT NULL,
    public_jwk   jsonb       NOT NULL,
    create_time  timestamptz NOT NULL DEFAULT now(),
    retire_time  timestamptz
);

CREATE TABLE audit_events (
    id         bigserial PRIMARY KEY,
    time       timestamptz NOT NULL DEFAULT now(),
    actor      text        NOT NULL DEFAULT '',
    action     text        NOT NULL,
    target     text        NOT NULL DEFAULT '',
    outcome    text        NOT NULL,
    client_ip  text        NOT NULL DEFAULT '',
    details    jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_events_time ON audit_events (time DESC);
CREATE INDEX audit_events_action ON audit_events (action, time DESC);
