-- MySQL 8.0.13+ and MariaDB 10.6+. DDL is not transactional in MySQL: every statement here
-- stands alone and is idempotent (CREATE TABLE IF NOT EXISTS, with its indexes and checks
-- inside, so each table appears whole or not at all), so a migration cut short re-runs cleanly.
--
-- Times are DATETIME(6) in UTC: the defaults and the store use UTC_TIMESTAMP(6), never NOW(),
-- which would follow each session's time_zone.
--
-- Text compares byte for byte (utf8mb4_bin): keys and topics are case-sensitive, as in Go.
CREATE TABLE IF NOT EXISTS {{.Table}} (
    id           BIGINT        NOT NULL AUTO_INCREMENT,
    message_id   CHAR(36)      CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    topic        VARCHAR(255)  NOT NULL,
    `key`        VARCHAR(1024) NULL,
    type         VARCHAR(255)  NOT NULL DEFAULT '',
    payload      LONGBLOB      NOT NULL DEFAULT (''),
    -- MariaDB stores JSON as LONGTEXT with a JSON_VALID check; MySQL has a native type.
    headers      JSON          NOT NULL DEFAULT ('{}'),
    created_at   DATETIME(6)   NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    available_at DATETIME(6)   NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    attempts     INT           NOT NULL DEFAULT 0,
    last_error   TEXT          NULL,
    published_at DATETIME(6)   NULL,
    PRIMARY KEY (id),
    UNIQUE KEY message_id_key (message_id),
    -- Per-key order check: rows of one key up to an id. A utf8mb4 VARCHAR(1024) is up to 4096
    -- bytes, over InnoDB's 3072-byte key limit, so the index holds a 191-character prefix
    -- (764 bytes, within even the old 767-byte limit); the full key is compared on the rows it
    -- finds. Keys are aggregate ids, far shorter in practice.
    KEY key_idx (`key`(191), id),
    -- Claims scan unpublished rows (published_at IS NULL sorts first) in id order; the
    -- retention cleaner deletes the oldest published ones.
    KEY pending_idx (published_at, id),
    -- Headers must be a JSON object: a row that is not would fail every claim that reads it.
    CHECK (JSON_TYPE(headers) = 'OBJECT')
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS {{.Dead}} (
    id           BIGINT        NOT NULL AUTO_INCREMENT,
    original_id  BIGINT        NOT NULL,
    message_id   CHAR(36)      CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    topic        VARCHAR(255)  NOT NULL,
    `key`        VARCHAR(1024) NULL,
    type         VARCHAR(255)  NOT NULL DEFAULT '',
    payload      LONGBLOB      NOT NULL,
    headers      LONGTEXT      NOT NULL,
    created_at   DATETIME(6)   NOT NULL,
    attempts     INT           NOT NULL,
    last_error   TEXT          NOT NULL,
    failed_at    DATETIME(6)   NOT NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Relays restricted to some topics share the key space only with relays of the same topics
-- (grp).
CREATE TABLE IF NOT EXISTS {{.Relays}} (
    relay_id     VARCHAR(255)  NOT NULL,
    grp          TEXT          NOT NULL,
    heartbeat_at DATETIME(6)   NOT NULL,
    PRIMARY KEY (relay_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
