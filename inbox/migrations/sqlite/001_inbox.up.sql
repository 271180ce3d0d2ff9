CREATE TABLE IF NOT EXISTS {{.Table}} (
    consumer     TEXT   NOT NULL,
    message_id   TEXT   NOT NULL,
    key          TEXT   NOT NULL DEFAULT '',
    position     INTEGER NOT NULL DEFAULT 0,
    processed_at INTEGER NOT NULL,
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX IF NOT EXISTS {{.Name "_processed_idx"}} ON {{.Table}} (consumer, processed_at);
CREATE TABLE IF NOT EXISTS {{.Sibling "_keys"}} (
    consumer   TEXT   NOT NULL,
    key        TEXT   NOT NULL,
    position   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (consumer, key)
);
CREATE INDEX IF NOT EXISTS {{.Name "_keys_updated_idx"}} ON {{.Sibling "_keys"}} (consumer, updated_at);
CREATE TABLE IF NOT EXISTS {{.Sibling "_attempts"}} (
    consumer   TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    attempts   INTEGER NOT NULL,
    last_error TEXT    NOT NULL DEFAULT '',
    updated_at INTEGER  NOT NULL,
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX IF NOT EXISTS {{.Name "_attempts_updated_idx"}} ON {{.Sibling "_attempts"}} (consumer, updated_at);
CREATE TABLE IF NOT EXISTS {{.Dead}} (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer   TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    topic      TEXT    NOT NULL,
    type       TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    msg_time   INTEGER  NOT NULL,
    headers    TEXT    NOT NULL,
    payload    BLOB   NOT NULL,
    position   INTEGER  NOT NULL,
    attempts   INTEGER NOT NULL,
    last_error TEXT    NOT NULL,
    dead_at    INTEGER  NOT NULL,
    retried_at INTEGER,
    UNIQUE (consumer, message_id)
);
CREATE INDEX IF NOT EXISTS {{.Name "_dead_retried_idx"}} ON {{.Dead}} (consumer, retried_at);
