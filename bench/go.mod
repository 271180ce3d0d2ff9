module github.com/outboxgo/outbox/bench

go 1.26.0

require (
	github.com/ThreeDotsLabs/watermill v1.5.1
	github.com/ThreeDotsLabs/watermill-nats/v2 v2.1.3
	github.com/ThreeDotsLabs/watermill-sql/v4 v4.1.2
	github.com/go-sql-driver/mysql v1.10.1
	github.com/jackc/pgx/v5 v5.12.0
	github.com/nats-io/nats.go v1.55.0
	github.com/outboxgo/outbox v0.0.0-00010101000000-000000000000
	github.com/outboxgo/outbox/relay/wal v0.0.0-00010101000000-000000000000
	github.com/outboxgo/outbox/sink/nats v0.0.0-00010101000000-000000000000
	gonum.org/v1/plot v0.17.0
)

require (
	codeberg.org/go-fonts/liberation v0.5.0 // indirect
	codeberg.org/go-latex/latex v0.2.0 // indirect
	codeberg.org/go-pdf/fpdf v0.11.1 // indirect
	filippo.io/edwards25519 v1.2.0 // indirect
	git.sr.ht/~sbinet/gg v0.7.0 // indirect
	github.com/ajstarks/svgo v0.0.0-20211024235047-1546f124cd8b // indirect
	github.com/cenkalti/backoff/v5 v5.0.3 // indirect
	github.com/golang/freetype v0.0.0-20170609003504-e2365dfdc4a0 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/jackc/pgio v1.0.0 // indirect
	github.com/jackc/pglogrepl v0.0.0-20250509230407-a9884f6bd75a // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/lib/pq v1.10.9 // indirect
	github.com/lithammer/shortuuid/v3 v3.0.7 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/oklog/ulid v1.3.1 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/sony/gobreaker v1.0.0 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/image v0.30.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)

// Every module of this repository resolves to its directory here, so that this module builds
// on its own (GOWORK=off) as well as in the workspace (go.work).
replace (
	github.com/outboxgo/outbox => ../
	github.com/outboxgo/outbox/chaos => ../chaos
	github.com/outboxgo/outbox/cmd/outbox => ../cmd/outbox
	github.com/outboxgo/outbox/dialect/sqlite => ../dialect/sqlite
	github.com/outboxgo/outbox/integration => ../integration
	github.com/outboxgo/outbox/internal/testutil/natstest => ../internal/testutil/natstest
	github.com/outboxgo/outbox/internal/testutil/sourcetest => ../internal/testutil/sourcetest
	github.com/outboxgo/outbox/relay/binlog => ../relay/binlog
	github.com/outboxgo/outbox/relay/wal => ../relay/wal
	github.com/outboxgo/outbox/sink/amqp => ../sink/amqp
	github.com/outboxgo/outbox/sink/kafka => ../sink/kafka
	github.com/outboxgo/outbox/sink/mqtt => ../sink/mqtt
	github.com/outboxgo/outbox/sink/nats => ../sink/nats
	github.com/outboxgo/outbox/sink/redis => ../sink/redis
	github.com/outboxgo/outbox/sink/webhook => ../sink/webhook
)
