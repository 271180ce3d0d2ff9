module github.com/outboxgo/outbox/sink/kafka

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
	github.com/outboxgo/outbox/sink/mqtt => ../../sink/mqtt
	github.com/outboxgo/outbox/sink/nats => ../../sink/nats
	github.com/outboxgo/outbox/sink/redis => ../../sink/redis
	github.com/outboxgo/outbox/sink/webhook => ../../sink/webhook
)

require (
	github.com/IBM/sarama v1.40.1
	github.com/cloudevents/sdk-go/protocol/kafka_sarama/v2 v2.15.2
	github.com/cloudevents/sdk-go/v2 v2.16.2
	github.com/google/uuid v1.6.0
	github.com/outboxgo/outbox v0.0.0-00010101000000-000000000000
	github.com/twmb/franz-go v1.22.2
	github.com/twmb/franz-go/pkg/kfake v0.0.0-20260918054303-01f206a7e32c
	github.com/twmb/franz-go/pkg/kmsg v1.15.0
	go.uber.org/goleak v1.3.0
)

require (
	github.com/davecgh/go-spew v1.1.1 // indirect
	github.com/eapache/go-resiliency v1.3.0 // indirect
	github.com/eapache/go-xerial-snappy v0.0.0-20230111030713-bf00bc1b83b6 // indirect
	github.com/eapache/queue v1.1.0 // indirect
	github.com/golang/snappy v0.0.4 // indirect
	github.com/hashicorp/errwrap v1.1.0 // indirect
	github.com/hashicorp/go-multierror v1.1.1 // indirect
	github.com/hashicorp/go-uuid v1.0.3 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/pgx/v5 v5.12.0 // indirect
	github.com/jcmturner/aescts/v2 v2.0.0 // indirect
	github.com/jcmturner/dnsutils/v2 v2.0.0 // indirect
	github.com/jcmturner/gofork v1.7.6 // indirect
	github.com/jcmturner/gokrb5/v8 v8.4.3 // indirect
	github.com/jcmturner/rpc/v2 v2.0.3 // indirect
	github.com/json-iterator/go v1.1.12 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/modern-go/concurrent v0.0.0-20180306012644-bacd9c7ef1dd // indirect
	github.com/modern-go/reflect2 v1.0.2 // indirect
	github.com/pierrec/lz4/v4 v4.1.33 // indirect
	github.com/rcrowley/go-metrics v0.0.0-20201227073835-cf1acfcdf475 // indirect
	go.uber.org/multierr v1.11.0 // indirect
	go.uber.org/zap v1.27.0 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/net v0.61.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)
