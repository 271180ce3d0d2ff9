CREATE TABLE IF NOT EXISTS {{.Table}} (
    consumer     text   NOT NULL,
    message_id   text   NOT NULL,
    key          text   NOT NULL DEFAULT '',
    position     bigint NOT NULL DEFAULT 0,
    processed_at bigint NOT NULL,
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX IF NOT EXISTS {{.Name "_processed_idx"}} ON {{.Table}} (consumer, processed_at);
CREATE TABLE IF NOT EXISTS {{.Sibling "_keys"}} (
    consumer   text   NOT NULL,
    key        text   NOT NULL,
    position   bigint NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (consumer, key)
);
CREATE INDEX IF NOT EXISTS {{.Name "_keys_updated_idx"}} ON {{.Sibling "_keys"}} (consumer, updated_at);
CREATE TABLE IF NOT EXISTS {{.Sibling "_attempts"}} (
    consumer   text    NOT NULL,
    message_id text    NOT NULL,
    attempts   integer NOT NULL,
    last_error text    NOT NULL DEFAULT '',
    updated_at bigint  NOT NULL,
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX IF NOT EXISTS {{.Name "_attempts_updated_idx"}} ON {{.Sibling "_attempts"}} (consumer, updated_at);
CREATE TABLE IF NOT EXISTS {{.Dead}} (
    id         bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer   text    NOT NULL,
    message_id text    NOT NULL,
    topic      text    NOT NULL,
    type       text    NOT NULL,
    source     text    NOT NULL,
    key        text    NOT NULL,
    msg_time   bigint  NOT NULL,
    headers    text    NOT NULL,
    payload    bytea   NOT NULL,
    position   bigint  NOT NULL,
    attempts   integer NOT NULL,
    last_error text    NOT NULL,
    dead_at    bigint  NOT NULL,
    retried_at bigint,
    UNIQUE (consumer, message_id)
);
CREATE INDEX IF NOT EXISTS {{.Name "_dead_retried_idx"}} ON {{.Dead}} (consumer, retried_at);
