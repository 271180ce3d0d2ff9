package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/relay/poll"
	"github.com/outboxgo/outbox/relay/wal"
)

// Relay kinds.
const (
	kindOutbox    = "outbox"     // poll source
	kindOutboxWAL = "outbox-wal" // WAL source, table or logical mode
	kindWMOffsets = "wm-offsets"
	kindWMQueue   = "wm-queue"
)

// wmTopic is the SQL topic (messages table) the Watermill forwarder listens to.
const wmTopic = "forwarder"

// system is one relay configuration under test, with its own schema and stream.
type system struct {
	ID        string // also the stream and schema suffix
	Label     string
	Kind      string
	Notify    bool          // outbox: LISTEN/NOTIFY (and its trigger)
	WALMode   wal.Mode      // outbox-wal: table or logical
	Async     bool          // outbox: postgres.Config.AsyncCommit
	Poll      time.Duration // poll interval (outbox: the fallback when Notify)
	Batch     int
	Workers   int
	DrainOnly bool // a Watermill batch-size variant tried only in the drain

	Schema, Stream, Prefix string
	Slot, LogicalPrefix    string // outbox-wal: replication slot (and publication); logical message prefix

	writer  *outbox.Writer        // outbox, outbox-wal table mode
	logical *outbox.LogicalWriter // outbox-wal logical mode
	wm      wmsql.SchemaAdapter   // Watermill
	sent    map[string]int64      // broker-acknowledged sends per topic, summed over relays
}

// stopRelay stops p and adds what it sent to s.sent (once, however often it is called).
func (s *system) stopRelay(p *relayProc) error {
	counts, err := p.Stop()
	if p.accounted {
		return err
	}
	p.accounted = true
	if s.sent == nil {
		s.sent = map[string]int64{}
	}
	for t, n := range counts {
		s.sent[t] += n
	}
	return err
}

// systems returns every configuration of the run.
func systems(o options, run string) ([]*system, error) {
	all := []*system{
		{ID: "outbox-notify", Label: "outbox (NOTIFY)", Kind: kindOutbox, Notify: true, Poll: o.outboxNotify, Batch: o.outboxBatch, Workers: o.outboxWorkers},
		{ID: "outbox-poll", Label: "outbox (poll only)", Kind: kindOutbox, Poll: o.outboxPollOnly, Batch: o.outboxBatch, Workers: o.outboxWorkers},
		{ID: "outbox-notify-async", Label: "outbox (NOTIFY), AsyncCommit", Kind: kindOutbox, Notify: true, Async: true,
			Poll: o.outboxNotify, Batch: o.outboxBatch, Workers: o.outboxWorkers, DrainOnly: true},
		{ID: "outbox-wal-table", Label: "outbox WAL (table)", Kind: kindOutboxWAL, WALMode: wal.ModeTable, Batch: o.walBatch, Workers: o.walWorkers},
		{ID: "outbox-wal-logical", Label: "outbox WAL (logical)", Kind: kindOutboxWAL, WALMode: wal.ModeLogical, Batch: o.walBatch, Workers: o.walWorkers},
		{ID: "wm-offsets", Label: "Watermill offsets", Kind: kindWMOffsets, Poll: o.wmPoll, Batch: o.wmBatch},
		{ID: "wm-queue", Label: "Watermill queue", Kind: kindWMQueue, Poll: o.wmPoll, Batch: o.wmBatch},
	}
	for _, f := range strings.Split(o.wmDrainBatches, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		b, err := strconv.Atoi(f)
		if err != nil || b < 1 {
			return nil, fmt.Errorf("--wm-drain-batches: bad batch size %q", f)
		}
		if b == o.wmBatch {
			continue
		}
		for _, k := range []string{kindWMOffsets, kindWMQueue} {
			name := map[string]string{kindWMOffsets: "Watermill offsets", kindWMQueue: "Watermill queue"}[k]
			all = append(all, &system{ID: fmt.Sprintf("%s-b%d", k, b), Label: fmt.Sprintf("%s, batch %d", name, b),
				Kind: k, Poll: o.wmPoll, Batch: b, DrainOnly: true})
		}
	}
	var out []*system
	for _, s := range all {
		if o.only != "" && !contains(strings.Split(o.only, ","), s.ID) {
			continue
		}
		s.Schema = "sbs_" + run + "_" + strings.ReplaceAll(s.ID, "-", "_")
		s.Stream = "SBS_" + run + "_" + s.ID
		s.Prefix = "sbs." + run + "." + s.ID + "."
		if s.Kind == kindOutboxWAL {
			s.Slot = s.Schema
			s.LogicalPrefix = "sbs-" + run
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--systems %q matches no system", o.only)
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if strings.TrimSpace(v) == s {
			return true
		}
	}
	return false
}

// Knobs describes every setting of the system for the report.
func (s *system) Knobs() string {
	switch s.Kind {
	case kindOutbox:
		mode := fmt.Sprintf("LISTEN/NOTIFY wake-ups (insert trigger), fallback poll %v", s.Poll)
		if !s.Notify {
			mode = fmt.Sprintf("poll only: PollInterval %v, DisableNotify, notify trigger dropped", s.Poll)
		}
		commit := ""
		if s.Async {
			commit = "; postgres.Config.AsyncCommit (the relay's claim transactions commit with synchronous_commit = off; not the default)"
		}
		return fmt.Sprintf("poll source: %s; BatchSize %s, Workers %s, MaxBatchBytes 16 MiB (default); "+
			"relay defaults (MaxAttempts 25, PublishTimeout 30s, BatchTimeout 1m); NATS sink: async publish, "+
			"MaxPending 4096 (default), Nats-Msg-Id = message id; row deleted after PubAck%s",
			mode, orDefault(s.Batch, poll.DefaultBatchSize), orDefault(s.Workers, poll.DefaultWorkers), commit)
	case kindOutboxWAL:
		mode := "table mode: producers insert with outbox.Writer (notify trigger dropped: nothing listens), " +
			"publication FOR TABLE outbox, rows deleted after PubAck"
		if s.WALMode == wal.ModeLogical {
			mode = "logical mode: producers write pg_logical_emit_message with outbox.LogicalWriter (prefix per run), no table"
		}
		return fmt.Sprintf("WAL source (pgoutput, one replication slot created before the workload's first commit "+
			"and dropped after it): %s; BatchSize %s, Workers %s, BatchLinger 1ms, MaxInFlight 10,000 (defaults); "+
			"relay defaults; NATS sink as above; slot position confirmed past acknowledged messages",
			mode, orDefault(s.Batch, wal.DefaultBatchSize), orDefault(s.Workers, wal.DefaultWorkers))
	case kindWMOffsets, kindWMQueue:
		schema := "DefaultPostgreSQLSchema + DefaultPostgreSQLOffsetsAdapter (offsets table, rows kept)"
		if s.Kind == kindWMQueue {
			schema = "PostgreSQLQueueSchema + PostgreSQLQueueOffsetsAdapter{DeleteOnAck: true}"
		}
		return fmt.Sprintf("%s; SubscribeBatchSize %d, PollInterval %v, ResendInterval 1s, RetryInterval 1s, "+
			"AckDeadline 30s (defaults), payload column JSON (default), schema created up front "+
			"(SubscribeInitialize); forwarder.NewForwarder (one router handler, CloseTimeout 10s) → "+
			"watermill-nats/v2 pkg/nats Publisher, JetStream mode, TrackMsgId (Nats-Msg-Id = UUID), "+
			"AutoProvision off (stream created up front), NATSMarshaler, errors-only logger; publish waits for each PubAck "+
			"(the publisher has no async option)", schema, s.Batch, s.Poll)
	}
	return ""
}

// orDefault formats a knob that 0 leaves at the library's default.
func orDefault(v, def int) string {
	if v == 0 {
		return fmt.Sprintf("%d (default)", def)
	}
	if v == def {
		return fmt.Sprintf("%d (default)", v)
	}
	return fmt.Sprint(v)
}

// adapters returns the Watermill schema and offsets adapters of a Watermill kind, with all
// tables in schema.
func adapters(kind, schema string, batch int) (wmsql.SchemaAdapter, wmsql.OffsetsAdapter) {
	table := func(topic string) string { return `"` + schema + `"."watermill_` + topic + `"` }
	offsets := func(topic string) string { return `"` + schema + `"."watermill_offsets_` + topic + `"` }
	if kind == kindWMQueue {
		return wmsql.PostgreSQLQueueSchema{GenerateMessagesTableName: table, SubscribeBatchSize: batch},
			wmsql.PostgreSQLQueueOffsetsAdapter{DeleteOnAck: true, GenerateMessagesTableName: table}
	}
	return wmsql.DefaultPostgreSQLSchema{GenerateMessagesTableName: table, SubscribeBatchSize: batch},
		wmsql.DefaultPostgreSQLOffsetsAdapter{GenerateMessagesOffsetsTableName: offsets}
}

// setup creates the system's schema, tables and stream.
func (s *system) setup(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream) error {
	if _, err := pool.Exec(ctx, `CREATE SCHEMA "`+s.Schema+`"`); err != nil {
		return fmt.Errorf("creating schema: %w", err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE "`+s.Schema+`".orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		customer text NOT NULL, amount_cents integer NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("creating orders table: %w", err)
	}
	switch s.Kind {
	case kindOutbox, kindOutboxWAL:
		// Both sources need the store's migrations (the WAL source its dead-letter table).
		store, err := postgres.New(ctx, postgres.Config{Pool: pool, Table: s.Schema + ".outbox"})
		if err != nil {
			return err
		}
		if _, err := store.MigrateUp(ctx); err != nil {
			return fmt.Errorf("migrating: %w", err)
		}
		s.writer = store.Writer()
		if s.WALMode == wal.ModeLogical {
			if s.logical, err = outbox.NewLogicalWriter(outbox.LogicalWriterConfig{Prefix: s.LogicalPrefix}); err != nil {
				return err
			}
		}
		if !s.Notify {
			// Poll-only, as the README recommends it: without the NOTIFY trigger.
			rows, err := pool.Query(ctx, `SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal`, s.Schema+".outbox")
			if err != nil {
				return err
			}
			names, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			for _, n := range names {
				if _, err := pool.Exec(ctx, `DROP TRIGGER "`+n+`" ON "`+s.Schema+`".outbox`); err != nil {
					return fmt.Errorf("dropping trigger: %w", err)
				}
			}
		}
	default:
		schema, offsets := adapters(s.Kind, s.Schema, s.Batch)
		s.wm = schema
		sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromPgx(pool), wmsql.SubscriberConfig{SchemaAdapter: schema, OffsetsAdapter: offsets}, nil)
		if err != nil {
			return err
		}
		if err := sub.SubscribeInitialize(wmTopic); err != nil {
			return fmt.Errorf("initializing Watermill schema: %w", err)
		}
		_ = sub.Close()
	}
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     s.Stream,
		Subjects: []string{s.Prefix + ">"},
		Storage:  jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("creating stream %s: %w", s.Stream, err)
	}
	return nil
}

// walSource returns a WAL source for the system: the relay's, or the orchestrator's for
// creating the slot before a workload's first commit.
func (s *system) walSource(databaseURL string, pool *pgxpool.Pool, batch, workers int, logger *slog.Logger) (*wal.Source, error) {
	return wal.New(wal.Config{ConnString: databaseURL, Pool: pool, Mode: s.WALMode, Table: s.Schema + ".outbox",
		SlotName: s.Slot, MessagePrefix: s.LogicalPrefix, BatchSize: batch, Workers: workers, Logger: logger})
}

// createSlot creates the system's replication slot and publication (WAL source only). A slot
// lives for one workload: an idle slot would hold back the WAL of everything else the run
// writes.
func (s *system) createSlot(ctx context.Context, o options, pool *pgxpool.Pool) error {
	if s.Kind != kindOutboxWAL {
		return nil
	}
	src, err := s.walSource(o.databaseURL, pool, 0, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	if err := src.Setup(ctx); err != nil {
		return fmt.Errorf("creating slot %s: %w", s.Slot, err)
	}
	return nil
}

// dropSlot drops the system's replication slot and publication, if any.
func (s *system) dropSlot(ctx context.Context, pool *pgxpool.Pool) error {
	if s.Kind != kindOutboxWAL {
		return nil
	}
	if err := wal.DropSlot(ctx, pool, s.Slot, 10*time.Second); err != nil {
		return err
	}
	_, err := pool.Exec(ctx, `DROP PUBLICATION IF EXISTS "`+s.Slot+`"`)
	return err
}

// teardown drops what setup created.
func (s *system) teardown(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream) error {
	err0 := s.dropSlot(ctx, pool)
	_, err1 := pool.Exec(ctx, `DROP SCHEMA IF EXISTS "`+s.Schema+`" CASCADE`)
	err2 := js.DeleteStream(ctx, s.Stream)
	if err2 != nil && strings.Contains(err2.Error(), "not found") {
		err2 = nil
	}
	return errors.Join(err0, err1, err2)
}

// benchMsg is one event of a workload. Its payload starts with {"seq":N, which is how the
// consumer recognizes it, whatever envelope each system adds.
type benchMsg struct {
	seq     int
	key     string
	payload []byte
}

func newMsg(seq, keys int) benchMsg {
	return benchMsg{
		seq:     seq,
		key:     "k" + strconv.Itoa(seq%max(keys, 1)),
		payload: fmt.Appendf(nil, `{"seq":%d,"order_id":"o-%010d","customer":"c-42","amount_cents":4200,"currency":"EUR"}`, seq, seq),
	}
}

// enqueue writes msgs to topic inside tx, the way each library's users do it.
func (s *system) enqueue(ctx context.Context, tx pgx.Tx, topic string, msgs []benchMsg) error {
	if s.Kind == kindOutbox || s.Kind == kindOutboxWAL {
		om := make([]outbox.Message, len(msgs))
		for i, m := range msgs {
			om[i] = outbox.Message{Topic: topic, Key: m.key, Payload: m.payload}
		}
		if s.logical != nil {
			return s.logical.Enqueue(ctx, tx, om...)
		}
		return s.writer.Enqueue(ctx, tx, om...)
	}
	// Watermill's documented outbox: an SQL publisher on the transaction, wrapped by the
	// forwarder's envelope publisher. The key travels as metadata (Watermill has no key).
	pub, err := wmsql.NewPublisher(wmsql.TxFromPgx(tx), wmsql.PublisherConfig{SchemaAdapter: s.wm}, nil)
	if err != nil {
		return err
	}
	fwd := forwarder.NewPublisher(pub, forwarder.PublisherConfig{ForwarderTopic: wmTopic})
	wms := make([]*message.Message, len(msgs))
	for i, m := range msgs {
		wm := message.NewMessage(watermill.NewUUID(), m.payload)
		wm.Metadata.Set("key", m.key)
		wms[i] = wm
	}
	return fwd.Publish(s.Prefix+topic, wms...)
}

// pendingRows counts the rows left in the system's table(s) (unpublished for outbox and the
// queue schema; all rows for the offsets schema, which never deletes); -1 for the WAL source's
// logical mode, which has no table.
func (s *system) pendingRows(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var q string
	switch s.Kind {
	case kindOutboxWAL:
		if s.WALMode == wal.ModeLogical {
			return -1, nil
		}
		q = `SELECT count(*) FROM "` + s.Schema + `".outbox`
	case kindOutbox:
		q = `SELECT count(*) FROM "` + s.Schema + `".outbox`
	default:
		q = `SELECT count(*) FROM "` + s.Schema + `"."watermill_` + wmTopic + `"`
	}
	var n int64
	err := pool.QueryRow(ctx, q).Scan(&n)
	return n, err
}

// vacuum runs VACUUM ANALYZE on the system's tables.
func (s *system) vacuum(ctx context.Context, pool *pgxpool.Pool) error {
	tables := []string{`"` + s.Schema + `".outbox`}
	switch s.Kind {
	case kindOutboxWAL:
		if s.WALMode == wal.ModeLogical {
			return nil
		}
	case kindWMOffsets:
		tables = []string{`"` + s.Schema + `"."watermill_` + wmTopic + `"`, `"` + s.Schema + `"."watermill_offsets_` + wmTopic + `"`}
	case kindWMQueue:
		tables = []string{`"` + s.Schema + `"."watermill_` + wmTopic + `"`}
	}
	for _, t := range tables {
		if _, err := pool.Exec(ctx, `VACUUM ANALYZE `+t); err != nil {
			return fmt.Errorf("vacuuming %s: %w", t, err)
		}
	}
	return nil
}
