-- Operator pauses (dialect.Pauser): a topic or a sink an operator paused with the admin API or
-- `outbox pause`. Every relay of the table reads it at its pause interval and holds the
-- messages of a paused topic, or routed to a paused sink, until the pause is removed.
-- paused_at is unix microseconds, as the outbox's times.
CREATE TABLE IF NOT EXISTS {{.Sibling "_pauses"}} (
    kind      TEXT    NOT NULL CHECK (kind IN ('topic', 'sink')),
    name      TEXT    NOT NULL,
    reason    TEXT    NOT NULL DEFAULT '',
    paused_by TEXT    NOT NULL DEFAULT '',
    paused_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;
