-- Wake-ups that producers do not pay for. A notifying transaction holds PostgreSQL's
-- server-wide notification lock from its commit record until the commit is flushed, so
-- notifying commits go one at a time: with the trigger of migrations 2 and 4, 8 and 32
-- concurrent producers lost half their commit throughput. A relay needs a notification only
-- while one of its workers waits for one. The workers say so in the sequence below: a relay
-- with a worker waiting keeps its value at a deadline (milliseconds since the epoch, the
-- database's clock) a fraction of a second ahead, renewing it while the worker waits; a busy
-- relay lets it lapse. The trigger notifies only before that deadline: under load, when no
-- worker waits, no commit notifies and the trigger costs one read of the sequence per
-- inserting statement. A worker that starts to wait re-checks for rows and waits out the
-- transactions that inserted before it said so (relay/poll), so no commit slips between.
--
-- The notification names the table only (the key hashes of migration 4 needed a transition
-- table, which costs every insert its capture): it wakes the relay's waiting workers.
-- Relays older than this migration never set the deadline, so they get no notifications
-- and wake at their poll interval: upgrade the relays first, then migrate.
CREATE SEQUENCE IF NOT EXISTS {{.Sibling "_wake"}} AS bigint MINVALUE 0 START WITH 0 NO CYCLE;
-- Every role that inserts into the outbox reads it in the trigger's WHEN clause; the relays
-- need UPDATE (setval) on it, as they need DELETE on the table.
GRANT SELECT ON SEQUENCE {{.Sibling "_wake"}} TO PUBLIC;
DROP TRIGGER IF EXISTS {{.Name "_notify_trg"}} ON {{.Table}};
CREATE OR REPLACE FUNCTION {{.Sibling "_notify"}}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_insert', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
    RETURN NULL;
END
$$;
CREATE TRIGGER {{.Name "_notify_trg"}} AFTER INSERT ON {{.Table}}
    FOR EACH STATEMENT
    WHEN (pg_sequence_last_value({{.Regclass "_wake"}}) > (extract(epoch FROM statement_timestamp()) * 1000)::bigint)
    EXECUTE FUNCTION {{.Sibling "_notify"}}();
