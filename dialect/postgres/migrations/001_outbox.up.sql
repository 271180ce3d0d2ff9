CREATE TABLE IF NOT EXISTS {{.Table}} (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id   uuid        NOT NULL,
    topic        text        NOT NULL,
    key          text,
    type         text        NOT NULL DEFAULT '',
    payload      bytea       NOT NULL DEFAULT '\x',
    headers      jsonb       NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    available_at timestamptz NOT NULL DEFAULT now(),
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text,
    published_at timestamptz,
    CONSTRAINT {{.Name "_message_id_key"}} UNIQUE (message_id)
);
-- Per-key order check and blocked-key lookups.
CREATE INDEX IF NOT EXISTS {{.Name "_key_idx"}} ON {{.Table}} (key, id) WHERE published_at IS NULL;
-- Retention mode: the claim scans only unpublished rows, the cleaner only published ones.
CREATE INDEX IF NOT EXISTS {{.Name "_pending_idx"}} ON {{.Table}} (id) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS {{.Name "_published_idx"}} ON {{.Table}} (published_at) WHERE published_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS {{.Dead}} (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    original_id  bigint      NOT NULL,
    message_id   uuid        NOT NULL,
    topic        text        NOT NULL,
    key          text,
    type         text        NOT NULL DEFAULT '',
    payload      bytea       NOT NULL DEFAULT '\x',
    headers      jsonb       NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL,
    attempts     integer     NOT NULL,
    last_error   text        NOT NULL,
    failed_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS {{.Relays}} (
    relay_id     text        PRIMARY KEY,
    heartbeat_at timestamptz NOT NULL
);
