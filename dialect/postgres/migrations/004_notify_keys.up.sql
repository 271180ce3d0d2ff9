-- Targeted wake-ups. The notification lists the partition hashes of the keys the statement
-- inserted (the claim's hashtextextended(coalesce(key, message_id::text), 0), masked to be
-- non-negative), so a relay wakes only the worker whose share of the keys holds them instead
-- of every worker of every relay for every commit. Statements inserting more than 64
-- distinct keys list none (every worker wakes); statements inserting nothing do not notify.
-- Relays older than this migration compare the whole payload with the table name and so
-- ignore these notifications (they still poll): upgrade the relays first, then migrate.
DROP TRIGGER IF EXISTS {{.Name "_notify_trg"}} ON {{.Table}};
CREATE OR REPLACE FUNCTION {{.Sibling "_notify"}}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    hashes bigint[];
BEGIN
    SELECT array_agg(h) INTO hashes FROM (
        SELECT DISTINCT hashtextextended(coalesce(key, message_id::text), 0) & 9223372036854775807 AS h
        FROM inserted LIMIT 65) AS d;
    IF hashes IS NULL THEN
        RETURN NULL;
    END IF;
    IF cardinality(hashes) > 64 THEN
        PERFORM pg_notify('outbox_insert', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
    ELSE
        PERFORM pg_notify('outbox_insert', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME || ' ' || array_to_string(hashes, ','));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER {{.Name "_notify_trg"}} AFTER INSERT ON {{.Table}}
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION {{.Sibling "_notify"}}();
