ALTER TABLE {{.Table}} DROP COLUMN last_error_at;
DROP TABLE IF EXISTS {{.Sibling "_counters"}};
DROP TRIGGER IF EXISTS {{.Sibling "_message_id_canon"}};
