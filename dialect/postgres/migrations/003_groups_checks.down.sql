ALTER TABLE {{.Table}} DROP CONSTRAINT IF EXISTS {{.Name "_headers_object"}};
ALTER TABLE {{.Relays}} DROP COLUMN IF EXISTS grp;
