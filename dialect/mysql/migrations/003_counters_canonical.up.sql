-- message_id in one form, lower-case and hyphenated, whoever inserts the row (plain SQL from
-- other languages included): two spellings of one UUID then meet in the unique index instead
-- of being published as two messages. Existing rows are canonicalised where that collides
-- with no other row.
DROP TRIGGER IF EXISTS {{.Sibling "_message_id_canon"}};
CREATE TRIGGER {{.Sibling "_message_id_canon"}} BEFORE INSERT ON {{.Table}} FOR EACH ROW
    SET NEW.message_id = IF(LOWER(NEW.message_id) REGEXP '^[0-9a-f]{32}$',
        CONCAT_WS('-', SUBSTR(LOWER(NEW.message_id), 1, 8), SUBSTR(LOWER(NEW.message_id), 9, 4),
            SUBSTR(LOWER(NEW.message_id), 13, 4), SUBSTR(LOWER(NEW.message_id), 17, 4), SUBSTR(LOWER(NEW.message_id), 21)),
        LOWER(NEW.message_id));
UPDATE IGNORE {{.Table}} SET message_id = LOWER(message_id) WHERE CAST(message_id AS BINARY) <> CAST(LOWER(message_id) AS BINARY);

-- Counters kept by the relay: broker_duplicates counts messages their broker acknowledged as
-- duplicates (Stats.BrokerDuplicates), updated in the transaction that finishes their claim.
CREATE TABLE IF NOT EXISTS {{.Sibling "_counters"}} (
    name  VARCHAR(64) NOT NULL,
    value BIGINT      NOT NULL DEFAULT 0,
    PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
INSERT IGNORE INTO {{.Sibling "_counters"}} (name, value) VALUES ('broker_duplicates', 0);

-- When last_error was written (every retry): which error of a topic is the latest
-- (Stats.Topics). Re-runnable: the store takes "duplicate column" as already done.
ALTER TABLE {{.Table}} ADD COLUMN last_error_at DATETIME(6) NULL;
