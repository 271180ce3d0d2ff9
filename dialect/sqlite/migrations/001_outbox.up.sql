-- Times are unix microseconds. The store computes them in Go; the defaults (millisecond
-- precision, SQLite's clock) only serve writers in other languages that leave them out.
-- AUTOINCREMENT: ids are never reused, so an id seen by a relay always names the same message.
CREATE TABLE IF NOT EXISTS {{.Table}} (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id   TEXT    NOT NULL,
    topic        TEXT    NOT NULL,
    key          TEXT,
    type         TEXT    NOT NULL DEFAULT '',
    payload      BLOB    NOT NULL DEFAULT x'',
    -- A malformed row would fail every claim that reads it: refuse it at insert time instead.
    headers      TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(headers) AND json_type(headers) = 'object'),
    created_at   INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)) CHECK (typeof(created_at) = 'integer'),
    available_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)) CHECK (typeof(available_at) = 'integer'),
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    published_at INTEGER CHECK (published_at IS NULL OR typeof(published_at) = 'integer'),
    CONSTRAINT {{.Name "_message_id_key"}} UNIQUE (message_id)
);
-- Per-key order check and blocked-key lookups.
CREATE INDEX IF NOT EXISTS {{.Name "_key_idx"}} ON {{.Table}} (key, id) WHERE published_at IS NULL;
-- Retention mode: the claim scans only unpublished rows, the cleaner only published ones.
CREATE INDEX IF NOT EXISTS {{.Name "_pending_idx"}} ON {{.Table}} (id) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS {{.Name "_published_idx"}} ON {{.Table}} (published_at) WHERE published_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS {{.Dead}} (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    original_id  INTEGER NOT NULL,
    message_id   TEXT    NOT NULL,
    topic        TEXT    NOT NULL,
    key          TEXT,
    type         TEXT    NOT NULL DEFAULT '',
    payload      BLOB    NOT NULL DEFAULT x'',
    headers      TEXT    NOT NULL DEFAULT '{}',
    created_at   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL,
    last_error   TEXT    NOT NULL,
    failed_at    INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS {{.Relays}} (
    relay_id     TEXT    PRIMARY KEY,
    heartbeat_at INTEGER NOT NULL
);
