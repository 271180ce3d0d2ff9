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
DROP SEQUENCE IF EXISTS {{.Sibling "_wake_until"}}, {{.Sibling "_wake_clock"}};
