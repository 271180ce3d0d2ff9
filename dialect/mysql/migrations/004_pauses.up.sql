-- Operator pauses (dialect.Pauser): a topic or a sink an operator paused with the admin API or
-- `outbox pause`. Every relay of the table reads it at its pause interval and holds the
-- messages of a paused topic, or routed to a paused sink, until the pause is removed.
-- Names compare as bytes (utf8mb4_bin), as topics do in claims.
CREATE TABLE IF NOT EXISTS {{.Sibling "_pauses"}} (
    kind      VARCHAR(16)  NOT NULL,
    name      VARCHAR(255) NOT NULL,
    reason    TEXT         NOT NULL,
    paused_by TEXT         NOT NULL,
    paused_at DATETIME(6)  NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    PRIMARY KEY (kind, name),
    CONSTRAINT {{.Name "_pauses_kind"}} CHECK (kind IN ('topic', 'sink'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
