package chaos

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
)

// ConsumerSpecEnv is the environment variable that carries a consumer process's ConsumerSpec,
// as JSON.
const ConsumerSpecEnv = "CHAOS_CONSUMER_SPEC"

// ConsumerSpec is the configuration of one consumer process (Config.Consumers): what Run
// hands to chaos/cmd/outbox-chaos-consumer in $CHAOS_CONSUMER_SPEC, and RunConsumer runs.
type ConsumerSpec struct {
	// Process numbers the process among the run's consumers; its effects carry it.
	Process int `json:"process"`
	// Sink names the broker, and so the inbox adapter (Sink* constants).
	Sink string `json:"sink"`
	// Dialect is the database's: "postgres" or "mysql".
	Dialect string `json:"dialect"`
	// DatabaseURL is a postgres:// URL or a go-sql-driver DSN, reaching the run's database
	// through its fault proxy. It holds a password: never logged.
	DatabaseURL string `json:"database_url"`
	// InboxTable, EffectsTable and CountersTable are qualified with the run's schema (or
	// database).
	InboxTable    string `json:"inbox_table"`
	EffectsTable  string `json:"effects_table"`
	CountersTable string `json:"counters_table"`
	// Consumer is the inbox consumer name every process shares.
	Consumer string `json:"consumer"`
	// MaxAttempts is the inbox's Config.MaxAttempts.
	MaxAttempts int `json:"max_attempts"`
	// Broker are the adapter's settings, by name (see the broker's inboxSetup).
	Broker map[string]string `json:"broker"`
}

// consumerMaxAttempts is the consumers' inbox MaxAttempts: a handler fails when the database
// goes away under it, which every database fault does, and such a failure must not
// dead-letter a message.
const consumerMaxAttempts = 100

// consumerBackoff is the consumers' inbox Backoff: 100ms, doubling up to 1s, as the relays'.
func consumerBackoff(attempt int) time.Duration {
	if attempt < 1 || attempt > 5 {
		return time.Second
	}
	return min(100*time.Millisecond<<(attempt-1), time.Second)
}

// RunConsumer runs one consumer process until ctx ends: the sink's inbox adapter, applying
// each message's effect through an inbox on the run's database. The effect is, in the inbox's
// transaction, one row in the effects table (message id, key, the payload's per-key sequence
// number and the key's apply number, from a per-key counter incremented in the same
// transaction): a message applied twice has two rows, and a key's rows ordered by apply
// number show the order its messages were applied in.
func RunConsumer(ctx context.Context, spec ConsumerSpec, log *slog.Logger) error {
	icfg := inbox.Config{
		Table: spec.InboxTable, Consumer: spec.Consumer, MaxAttempts: cmp.Or(spec.MaxAttempts, consumerMaxAttempts),
		Backoff: consumerBackoff, Logger: log,
	}
	eff := &effecter{process: spec.Process}
	switch spec.Dialect {
	case string(outbox.Postgres):
		pcfg, err := pgxpool.ParseConfig(spec.DatabaseURL)
		if err != nil {
			return errors.New("consumer: parsing the database URL") // the error would quote it
		}
		pcfg.MaxConns = 8
		pool, err := pgxpool.NewWithConfig(ctx, pcfg)
		if err != nil {
			return fmt.Errorf("consumer: connecting: %w", err)
		}
		defer pool.Close()
		icfg.Dialect, icfg.Pool = outbox.Postgres, pool
		eff.counter = `INSERT INTO ` + spec.CountersTable + ` (key, n) VALUES ($1, 1)
			ON CONFLICT (key) DO UPDATE SET n = ` + spec.CountersTable + `.n + 1 RETURNING n`
		eff.insert = `INSERT INTO ` + spec.EffectsTable + ` (message_id, key, seq, apply, process) VALUES ($1, $2, $3, $4, $5)`
	case string(outbox.MySQL):
		mc, err := gomysql.ParseDSN(spec.DatabaseURL)
		if err != nil {
			return errors.New("consumer: parsing the MySQL DSN")
		}
		conn, err := gomysql.NewConnector(mc)
		if err != nil {
			return errors.New("consumer: parsing the MySQL DSN")
		}
		db := sql.OpenDB(conn)
		defer db.Close()
		db.SetMaxOpenConns(8)
		icfg.Dialect, icfg.DB = outbox.MySQL, db
		eff.counter = "INSERT INTO " + spec.CountersTable + " (`key`, n) VALUES (?, 1) ON DUPLICATE KEY UPDATE n = n + 1"
		eff.read = "SELECT n FROM " + spec.CountersTable + " WHERE `key` = ? FOR UPDATE"
		eff.insert = "INSERT INTO " + spec.EffectsTable + " (message_id, `key`, seq, apply, process) VALUES (?, ?, ?, ?, ?)"
	default:
		return fmt.Errorf("consumer: dialect %q is not postgres or mysql", spec.Dialect)
	}
	in, err := inbox.New(ctx, icfg)
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	run := consumerAdapter(spec.Sink)
	if run == nil {
		return fmt.Errorf("consumer: no inbox adapter for sink %q", spec.Sink)
	}
	log.Info("consumer starting", slog.Int("process", spec.Process), slog.String("sink", spec.Sink), slog.String("consumer", spec.Consumer))
	err = run(ctx, spec, in, eff.apply, log)
	if ctx.Err() != nil {
		return nil // stopped
	}
	return err
}

// effecter applies a message's effect in the inbox's transaction.
type effecter struct {
	process int
	counter string // increments the key's counter (PostgreSQL: and returns it)
	read    string // MySQL: reads it back
	insert  string
}

func (e *effecter) apply(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
	key, seq, ok := effectFields(m.Payload)
	if !ok {
		// Not a producer's payload: recorded all the same, for verify to report.
		key, seq = "?"+m.Key, -1
	}
	var n int64
	switch t := tx.(type) {
	case pgx.Tx:
		if err := t.QueryRow(ctx, e.counter, key).Scan(&n); err != nil {
			return fmt.Errorf("counting: %w", err)
		}
		if _, err := t.Exec(ctx, e.insert, m.ID, key, seq, n, e.process); err != nil {
			return fmt.Errorf("inserting the effect: %w", err)
		}
	case *sql.Tx:
		if _, err := t.ExecContext(ctx, e.counter, key); err != nil {
			return fmt.Errorf("counting: %w", err)
		}
		if err := t.QueryRowContext(ctx, e.read, key).Scan(&n); err != nil {
			return fmt.Errorf("reading the count: %w", err)
		}
		if _, err := t.ExecContext(ctx, e.insert, m.ID, key, seq, n, e.process); err != nil {
			return fmt.Errorf("inserting the effect: %w", err)
		}
	default:
		return fmt.Errorf("unexpected transaction type %T", tx)
	}
	return nil
}

// effectFields returns the key name and sequence number of a payload made by makePayload.
func effectFields(p []byte) (key string, seq int, ok bool) {
	if !bytes.HasPrefix(p, []byte(payloadPrefix)) {
		return "", 0, false
	}
	k, s := -1, -1
	num := func(v []byte) int {
		n, err := strconv.Atoi(string(v))
		if err != nil {
			return -1
		}
		return n
	}
	for f := range bytes.FieldsSeq(p) {
		name, val, found := bytes.Cut(f, []byte("="))
		if !found {
			continue
		}
		switch string(name) {
		case "k":
			k = num(val)
		case "s":
			s = num(val)
		}
		if k >= 0 && s >= 0 {
			break
		}
	}
	if k < 0 || s < 0 {
		return "", 0, false
	}
	return keyName(k), s, true
}

// consumerRunner runs a sink's inbox adapter until ctx ends.
type consumerRunner func(ctx context.Context, spec ConsumerSpec, in *inbox.Inbox, h inbox.Handler, log *slog.Logger) error
