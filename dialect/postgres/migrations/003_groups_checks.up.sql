-- Relays restricted to some topics share the key space only with relays of the same topics.
ALTER TABLE {{.Relays}} ADD COLUMN IF NOT EXISTS grp text NOT NULL DEFAULT '';
-- Headers must be a JSON object (rows written by other languages included). NOT VALID: existing
-- rows are not rescanned; a bad one is dead-lettered by the relay instead of blocking claims.
ALTER TABLE {{.Table}} ADD CONSTRAINT {{.Name "_headers_object"}} CHECK (jsonb_typeof(headers) = 'object') NOT VALID;
