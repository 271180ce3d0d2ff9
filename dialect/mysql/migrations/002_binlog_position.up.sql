-- The binlog relay source (relay/binlog) keeps its position here, one row per source name:
-- the position after the last transaction every message of which, and of every transaction
-- before it, is done (acknowledged or dead-lettered). A restart resumes from it.
--
-- gtid is MariaDB's GTID position (domain-server-sequence per domain, comma-separated) or
-- MySQL's executed GTID set, '' when the source works with file and pos only; file and pos are
-- the binary log coordinates of the same point.
CREATE TABLE IF NOT EXISTS {{.Sibling "_binlog"}} (
    name       VARCHAR(255)    NOT NULL,
    gtid       TEXT            NOT NULL,
    file       VARCHAR(512)    NOT NULL,
    pos        BIGINT UNSIGNED NOT NULL,
    updated_at DATETIME(6)     NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
