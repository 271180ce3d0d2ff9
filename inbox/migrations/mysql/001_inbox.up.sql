CREATE TABLE IF NOT EXISTS {{.Table}} (
    consumer     VARCHAR(200) NOT NULL,
    message_id   VARCHAR(255) NOT NULL,
    `key`        VARCHAR(255) NOT NULL DEFAULT '',
    position     BIGINT       NOT NULL DEFAULT 0,
    processed_at BIGINT       NOT NULL,
    PRIMARY KEY (consumer, message_id),
    KEY {{.Name "_processed_idx"}} (consumer, processed_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE IF NOT EXISTS {{.Sibling "_keys"}} (
    consumer   VARCHAR(200) NOT NULL,
    `key`      VARCHAR(255) NOT NULL,
    position   BIGINT       NOT NULL,
    updated_at BIGINT       NOT NULL,
    PRIMARY KEY (consumer, `key`),
    KEY {{.Name "_keys_updated_idx"}} (consumer, updated_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE IF NOT EXISTS {{.Sibling "_attempts"}} (
    consumer   VARCHAR(200) NOT NULL,
    message_id VARCHAR(255) NOT NULL,
    attempts   INT          NOT NULL,
    last_error TEXT         NOT NULL,
    updated_at BIGINT       NOT NULL,
    PRIMARY KEY (consumer, message_id),
    KEY {{.Name "_attempts_updated_idx"}} (consumer, updated_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE IF NOT EXISTS {{.Dead}} (
    id         BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    consumer   VARCHAR(200) NOT NULL,
    message_id VARCHAR(255) NOT NULL,
    topic      TEXT         NOT NULL,
    type       TEXT         NOT NULL,
    source     TEXT         NOT NULL,
    `key`      VARCHAR(255) NOT NULL,
    msg_time   BIGINT       NOT NULL,
    headers    MEDIUMTEXT   NOT NULL,
    payload    LONGBLOB     NOT NULL,
    position   BIGINT       NOT NULL,
    attempts   INT          NOT NULL,
    last_error TEXT         NOT NULL,
    dead_at    BIGINT       NOT NULL,
    retried_at BIGINT       NULL,
    UNIQUE KEY {{.Name "_dead_message_key"}} (consumer, message_id),
    KEY {{.Name "_dead_retried_idx"}} (consumer, retried_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
