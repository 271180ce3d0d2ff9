ALTER TABLE {{.Table}} DROP COLUMN IF EXISTS last_error_at;
DROP TABLE IF EXISTS {{.Sibling "_counters"}};
