-- Relays restricted to some topics share the key space only with relays of the same topics.
ALTER TABLE {{.Relays}} ADD COLUMN grp TEXT NOT NULL DEFAULT '';
