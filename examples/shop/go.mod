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

require modernc.org/sqlite v1.63.0

require (
	github.com/dustin/go-humanize v1.1.0 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/mattn/go-isatty v0.0.24 // indirect
	github.com/ncruces/go-strftime v1.1.0 // indirect
	github.com/remyoudompheng/bigfft v0.0.0-20230129092748-24d4a6f8daec // indirect
	golang.org/x/sys v0.49.0 // indirect
	modernc.org/libc v1.80.1 // indirect
	modernc.org/mathutil v1.7.1 // indirect
	modernc.org/memory v1.12.1 // indirect
)
