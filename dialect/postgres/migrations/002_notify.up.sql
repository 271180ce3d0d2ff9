-- Wake relays at commit: one notification per inserting statement (and PostgreSQL folds
-- identical notifications of one transaction into one). Rows inserted by plain SQL from other
-- languages notify too. The payload names the table so relays of other tables ignore it.
CREATE OR REPLACE FUNCTION {{.Sibling "_notify"}}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_insert', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
    RETURN NULL;
END
$$;
CREATE TRIGGER {{.Name "_notify_trg"}} AFTER INSERT ON {{.Table}}
    FOR EACH STATEMENT EXECUTE FUNCTION {{.Sibling "_notify"}}();
