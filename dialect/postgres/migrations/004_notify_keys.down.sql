DROP TRIGGER IF EXISTS {{.Name "_notify_trg"}} ON {{.Table}};
CREATE OR REPLACE FUNCTION {{.Sibling "_notify"}}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_insert', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
    RETURN NULL;
END
$$;
CREATE TRIGGER {{.Name "_notify_trg"}} AFTER INSERT ON {{.Table}}
    FOR EACH STATEMENT EXECUTE FUNCTION {{.Sibling "_notify"}}();
