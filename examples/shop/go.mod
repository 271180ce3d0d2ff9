module github.com/outboxgo/outbox/examples/shop

go 1.26.0

// Every module of this repository resolves to its directory here, so that this module builds
// on its own (GOWORK=off) as well as in the workspace (go.work).
replace (
	github.com/outboxgo/outbox => ../..
	github.com/outboxgo/outbox/bench => ../../bench
	github.com/outboxgo/outbox/chaos => ../../chaos
	github.com/outboxgo/outbox/cmd/outbox => ../../cmd/outbox
	github.com/outboxgo/outbox/dialect/sqlite => ../../dialect/sqlite
	github.com/outboxgo/outbox/inbox/natsinbox => ../../inbox/natsinbox
	github.com/outboxgo/outbox/inbox/redisinbox => ../../inbox/redisinbox
	github.com/outboxgo/outbox/integration => ../../integration
	github.com/outboxgo/outbox/internal/testutil/natstest => ../../internal/testutil/natstest
	github.com/outboxgo/outbox/internal/testutil/sourcetest => ../../internal/testutil/sourcetest
	github.com/outboxgo/outbox/relay/binlog => ../../relay/binlog
	github.com/outboxgo/outbox/relay/wal => ../../relay/wal
	github.com/outboxgo/outbox/sink/amqp => ../../sink/amqp
	github.com/outboxgo/outbox/sink/kafka => ../../sink/kafka
	github.com/outboxgo/outbox/sink/mqtt => ../../sink/mqtt
	github.com/outboxgo/outbox/sink/nats => ../../sink/nats
	github.com/outboxgo/outbox/sink/redis => ../../sink/redis
	github.com/outboxgo/outbox/sink/webhook => ../../sink/webhook
)

require (
	github.com/jackc/pgx/v5 v5.12.0
	github.com/nats-io/nats-server/v2 v2.15.2
	github.com/nats-io/nats.go v1.55.0
	github.com/outboxgo/outbox v0.0.0-00010101000000-000000000000
	github.com/outboxgo/outbox/dialect/sqlite v0.0.0-00010101000000-000000000000
	github.com/outboxgo/outbox/inbox/natsinbox v0.0.0-00010101000000-000000000000
	github.com/outboxgo/outbox/sink/nats v0.0.0-00010101000000-000000000000
	modernc.org/sqlite v1.61.1 // indirect
)

require (
	github.com/antithesishq/antithesis-sdk-go v0.8.0-default-no-op // indirect
	github.com/dustin/go-humanize v1.1.0 // indirect
	github.com/google/go-tpm v0.9.8 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/mattn/go-isatty v0.0.24 // indirect
	github.com/minio/highwayhash v1.0.4 // indirect
	github.com/nats-io/jwt/v2 v2.8.2 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/ncruces/go-strftime v1.1.0 // indirect
	github.com/remyoudompheng/bigfft v0.0.0-20230129092748-24d4a6f8daec // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	golang.org/x/time v0.16.0 // indirect
	modernc.org/libc v1.80.1 // indirect
	modernc.org/mathutil v1.7.1 // indirect
	modernc.org/memory v1.12.1 // indirect
)
