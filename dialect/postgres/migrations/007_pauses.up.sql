-- Operator pauses (dialect.Pauser): a topic or a sink an operator paused with the admin API or
-- `outbox pause`. Every relay of the table reads it at its pause interval and holds the
-- messages of a paused topic, or routed to a paused sink, until the pause is removed.
CREATE TABLE IF NOT EXISTS {{.Sibling "_pauses"}} (
    kind      text        NOT NULL,
    name      text        NOT NULL,
    reason    text        NOT NULL DEFAULT '',
    paused_by text        NOT NULL DEFAULT '',
    paused_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, name),
    CONSTRAINT {{.Name "_pauses_kind"}} CHECK (kind IN ('topic', 'sink'))
);
