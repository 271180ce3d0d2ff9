// Package chaos checks the relay's guarantees under faults, end to end, the way they are
// promised: with `outbox relay` processes, a real database (PostgreSQL, or MariaDB) and a real
// broker.
//
// A run commits business rows and their messages from several producers over many keys, each
// message carrying its key and a per-key sequence number; some transactions are rolled back
// on purpose. Several relay processes share the outbox table while a consumer records
// everything the broker delivers. Faults come at random moments: kill -9 of a relay (started
// again), a broker restart, the relays' connections to the database or the broker cut and
// restored, the relays' database sessions terminated (or, on a machine of its own, a real
// PostgreSQL restart). After the fault phase the run waits, bounded, for the backlog to drain,
// and reports: committed, delivered, lost, phantom (delivered from a transaction that never
// committed), per-key order violations, duplicates, end-to-end latency and the time to drain
// after the last fault.
//
// With Config.Hostile, hostile rows are mixed into the load, written with plain SQL as other
// languages (or people) write them: values the database accepts and the relay cannot decode
// (infinite or zero dates, attempts out of range, message ids that are not UUIDs, headers that
// are not an object), another spelling of a committed message's id, and headers the sinks must
// refuse (Nats-*, CloudEvents attributes in any case and binding, CR LF in a value, a
// structured-mode content type). Each class has a fate — dead-lettered with a reason naming
// the problem, refused by the database, or delivered — and the report counts, per class,
// what met it and what did not. A producer's message in the dead-letter table, and more
// deliveries than (max_attempts + 1) × messages, are violations too.
//
// With Config.Consumers, consumer processes (chaos/cmd/outbox-chaos-consumer) run the sink's
// inbox adapter beside the raw consumer, on a subscription of their own, and apply each
// message's effect through the inbox in the run's database: a row in an effects table with
// the key's apply number from a counter, in the inbox's transaction. They are killed (kill
// -9) and restarted, and reach the database and the broker through the fault proxies. The
// report then checks the effects as well: every committed message applied exactly once,
// each key's effects in order, no inbox dead letter. Each broker's consumers are configured
// so that the adapter's order promise applies (several competing processes where the broker
// keeps a key with one of them at a time, else one), and the report's notes say which.
//
// The relays run one of the sources of the outbox command: poll (on either database), wal and
// wal-logical (PostgreSQL's logical replication), or binlog (MariaDB's binary log). Each run
// has a namespace of its own, dropped afterwards: a schema on PostgreSQL, a database (and a
// user for the relays) on MariaDB.
//
// The brokers: NATS JetStream and Kafka (kfake) in process, owned by the run and restarted
// as a fault; RabbitMQ, Redis Streams and MQTT (Mosquitto) on the shared servers, in a
// private corner of each, cut but never restarted; webhooks to an in-process HTTP receiver.
//
// Run is the engine; chaos/cmd/outbox-chaos is the program, and docs/reliability.md
// describes the profiles and their latest figures.
package chaos
