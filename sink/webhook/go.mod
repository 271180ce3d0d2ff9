module github.com/outboxgo/outbox/sink/webhook

go 1.26.0

// Every module of this repository resolves to its directory here, so that this module builds
// on its own (GOWORK=off) as well as in the workspace (go.work).
replace (
	github.com/outboxgo/outbox => ../..
	github.com/outboxgo/outbox/chaos => ../../chaos
	github.com/outboxgo/outbox/cmd/outbox => ../../cmd/outbox
	github.com/outboxgo/outbox/dialect/sqlite => ../../dialect/sqlite
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
)

require (
	github.com/cloudevents/sdk-go/v2 v2.16.2
	github.com/google/uuid v1.6.0
	github.com/outboxgo/outbox v0.0.0-00010101000000-000000000000
	go.uber.org/goleak v1.3.0
)

require (
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/pgx/v5 v5.12.0 // indirect
	github.com/json-iterator/go v1.1.12 // indirect
	github.com/modern-go/concurrent v0.0.0-20180306012644-bacd9c7ef1dd // indirect
	github.com/modern-go/reflect2 v1.0.2 // indirect
	go.uber.org/multierr v1.11.0 // indirect
	go.uber.org/zap v1.27.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	golang.org/x/time v0.16.0 // indirect
)
