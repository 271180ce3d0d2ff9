-- message_id is a uuid column: PostgreSQL accepts any spelling of a UUID (upper case, braces,
-- no hyphens) and stores its value, so two spellings of one id meet in the unique index and
-- every reader gets the canonical lower-case hyphenated text.
--
-- Counters kept by the relay: broker_duplicates counts messages their broker acknowledged as
-- duplicates (Stats.BrokerDuplicates), updated in the transaction that finishes their claim.
CREATE TABLE IF NOT EXISTS {{.Sibling "_counters"}} (
    name  text   PRIMARY KEY,
    value bigint NOT NULL DEFAULT 0
);
INSERT INTO {{.Sibling "_counters"}} (name, value) VALUES ('broker_duplicates', 0) ON CONFLICT (name) DO NOTHING;
-- When last_error was written (every retry): which error of a topic is the latest
-- (Stats.Topics). No default, so adding it rewrites nothing.
ALTER TABLE {{.Table}} ADD COLUMN IF NOT EXISTS last_error_at timestamptz;
