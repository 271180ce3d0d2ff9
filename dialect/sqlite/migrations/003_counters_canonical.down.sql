DROP TABLE IF EXISTS {{.Sibling "_counters"}};
DROP TRIGGER IF EXISTS {{.Name "_message_id_canon"}};
ALTER TABLE {{.Table}} DROP COLUMN last_error_at;
