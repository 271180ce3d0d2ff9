-- The table is rebuilt once, for defaults every SQLite computes: unixepoch('subsec') needs
-- SQLite 3.42, and older ones (the sqlite3 shell of Debian 12 is 3.40) turned it into NULL,
-- so a plain INSERT leaving the times out failed. julianday('now') has millisecond precision
-- everywhere. The rebuild also adds last_error_at. Ids keep their sequence (AUTOINCREMENT).
CREATE TABLE {{.Name "_rebuild"}} (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id    TEXT    NOT NULL,
    topic         TEXT    NOT NULL,
    key           TEXT,
    type          TEXT    NOT NULL DEFAULT '',
    payload       BLOB    NOT NULL DEFAULT x'',
    headers       TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(headers) AND json_type(headers) = 'object'),
    created_at    INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)) CHECK (typeof(created_at) = 'integer'),
    available_at  INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)) CHECK (typeof(available_at) = 'integer'),
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    published_at  INTEGER CHECK (published_at IS NULL OR typeof(published_at) = 'integer'),
    -- When last_error was written (every retry): which error of a topic is the latest
    -- (Stats.Topics).
    last_error_at INTEGER,
    CONSTRAINT {{.Name "_message_id_key"}} UNIQUE (message_id)
);
INSERT INTO {{.Name "_rebuild"}} (id, message_id, topic, key, type, payload, headers, created_at, available_at, attempts, last_error, published_at)
SELECT id, message_id, topic, key, type, payload, headers, created_at, available_at, attempts, last_error, published_at FROM {{.Table}};
DELETE FROM sqlite_sequence WHERE name = {{.Literal "_rebuild"}};
INSERT INTO sqlite_sequence (name, seq) SELECT {{.Literal "_rebuild"}}, seq FROM sqlite_sequence WHERE name = {{.Literal ""}};
DROP TABLE {{.Table}};
ALTER TABLE {{.Name "_rebuild"}} RENAME TO {{.Name ""}};
CREATE INDEX IF NOT EXISTS {{.Name "_key_idx"}} ON {{.Table}} (key, id) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS {{.Name "_pending_idx"}} ON {{.Table}} (id) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS {{.Name "_published_idx"}} ON {{.Table}} (published_at) WHERE published_at IS NOT NULL;

-- message_id in one form, lower-case and hyphenated, whoever inserts the row (plain SQL from
-- other languages included): two spellings of one UUID then meet in the unique index (the
-- second insert fails) instead of being published as two messages.
CREATE TRIGGER IF NOT EXISTS {{.Name "_message_id_canon"}} AFTER INSERT ON {{.Table}}
WHEN typeof(NEW.message_id) = 'text' AND NEW.message_id <> (CASE
    WHEN length(NEW.message_id) = 32 AND lower(NEW.message_id) NOT GLOB '*[^0-9a-f]*' THEN
        substr(lower(NEW.message_id), 1, 8) || '-' || substr(lower(NEW.message_id), 9, 4) || '-' ||
        substr(lower(NEW.message_id), 13, 4) || '-' || substr(lower(NEW.message_id), 17, 4) || '-' || substr(lower(NEW.message_id), 21)
    ELSE lower(NEW.message_id) END)
BEGIN
    UPDATE {{.Table}} SET message_id = (CASE
        WHEN length(NEW.message_id) = 32 AND lower(NEW.message_id) NOT GLOB '*[^0-9a-f]*' THEN
            substr(lower(NEW.message_id), 1, 8) || '-' || substr(lower(NEW.message_id), 9, 4) || '-' ||
            substr(lower(NEW.message_id), 13, 4) || '-' || substr(lower(NEW.message_id), 17, 4) || '-' || substr(lower(NEW.message_id), 21)
        ELSE lower(NEW.message_id) END) WHERE id = NEW.id;
END;
UPDATE OR IGNORE {{.Table}} SET message_id = lower(message_id) WHERE typeof(message_id) = 'text' AND message_id <> lower(message_id);

-- Counters kept by the relay: broker_duplicates counts messages their broker acknowledged as
-- duplicates (Stats.BrokerDuplicates), updated in the transaction that finishes their claim.
CREATE TABLE IF NOT EXISTS {{.Sibling "_counters"}} (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO {{.Sibling "_counters"}} (name, value) VALUES ('broker_duplicates', 0);
