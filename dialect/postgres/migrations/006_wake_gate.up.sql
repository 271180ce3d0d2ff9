-- Wake-ups that producers do not pay for. A notifying transaction holds PostgreSQL's
-- server-wide notification lock from its commit record until the commit is flushed, so
-- notifying commits go one at a time: with the trigger of migrations 2 and 4, 8 and 32
-- concurrent producers lost half their commit throughput. A relay needs a notification only
-- while one of its workers waits for one, so the trigger notifies only while the gate is
-- open: while _wake_until is ahead of _wake_clock. Both hold milliseconds of the database's
-- clock, written by relays only: a relay with a waiting worker keeps _wake_until a fraction of
-- a second ahead of the time; relays move _wake_clock to the time (so that the leases of
-- relays that stopped renewing run out), and shut the gate when their last waiting worker
-- wakes. Under load no worker waits, the gate stays shut, and the trigger costs two reads of a
-- sequence per inserting statement (a time computed in the WHEN clause would cost more). A
-- worker that starts to wait re-checks for rows and waits out the transactions that inserted
-- before it opened the gate (relay/poll), so no commit slips between.
--
-- The notification names the table only (the key hashes of migration 4 needed a transition
-- table, which costs every insert its capture): it wakes the relay's waiting workers.
-- Relays older than this migration never open the gate, so they get no notifications and
-- wake at their poll interval: upgrade the relays first, then migrate.
CREATE SEQUENCE IF NOT EXISTS {{.Sibling "_wake_until"}} AS bigint MINVALUE 0 START WITH 0 NO CYCLE;
CREATE SEQUENCE IF NOT EXISTS {{.Sibling "_wake_clock"}} AS bigint MINVALUE 0 START WITH 0 NO CYCLE;
-- Every role that inserts into the outbox reads them in the trigger's WHEN clause; the relays
-- need UPDATE on them (setval), as they need DELETE on the table.
GRANT SELECT ON SEQUENCE {{.Sibling "_wake_until"}}, {{.Sibling "_wake_clock"}} TO PUBLIC;
DROP TRIGGER IF EXISTS {{.Name "_notify_trg"}} ON {{.Table}};
CREATE OR REPLACE FUNCTION {{.Sibling "_notify"}}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_insert', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
    RETURN NULL;
END
$$;
CREATE TRIGGER {{.Name "_notify_trg"}} AFTER INSERT ON {{.Table}}
    FOR EACH STATEMENT
    WHEN (pg_sequence_last_value({{.Regclass "_wake_until"}}) > pg_sequence_last_value({{.Regclass "_wake_clock"}}))
    EXECUTE FUNCTION {{.Sibling "_notify"}}();
