package wal

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/internal/sqlident"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/internal/keyqueue"
)

// ErrSlotNotFound is returned by Lag when the replication slot does not exist.
var ErrSlotNotFound = errors.New("wal: replication slot not found")

// Source tails PostgreSQL's WAL through a logical replication slot and hands committed
// messages to the relay. It implements relay.Source, relay.Runner and relay.Concurrent: Run
// drives the replication connection, Next and Finish serve the relay's workers.
type Source struct {
	cfg      Config
	conn     *pgconn.Config
	table    sqlident.Table
	logger   *slog.Logger
	hbPrefix string
	held     dialect.HeldWriter // deletes, dead letters, broker duplicates: the postgres store

	running atomic.Bool
	stream  atomic.Pointer[pgconn.PgConn] // the replication connection while streaming
	crashed chan struct{}                 // closed by tests to simulate a crash

	mu sync.Mutex
	// q holds the messages read and not done. A new replication session resets it: the
	// session streams again from the confirmed position.
	q          *keyqueue.Queue[txnInfo]
	confirmed  pglogrepl.LSN
	streaming  bool
	reconnects int
}

// txnInfo is what the source records of a transaction read from the stream, or of a position
// marker (keepalive, heartbeat).
type txnInfo struct {
	end    pglogrepl.LSN // commit end LSN; 0 until the Commit message
	marker bool
	xid    uint32 // the transaction's id (table mode: when are its rows visible)
}

type ackOp = keyqueue.Ack[txnInfo]

var (
	_ relay.Source     = (*Source)(nil)
	_ relay.Runner     = (*Source)(nil)
	_ relay.Concurrent = (*Source)(nil)
)

// New validates cfg and returns a Source. It does not connect: Run does, and Setup can be
// called first to create the publication and the slot.
func New(cfg Config) (*Source, error) {
	pc, t, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	store, err := postgres.New(context.Background(), postgres.Config{Pool: cfg.Pool, Table: cfg.Table, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	s := &Source{
		cfg:      cfg,
		conn:     pc,
		table:    t,
		logger:   cfg.Logger.With(slog.String("slot", cfg.SlotName)),
		hbPrefix: cfg.MessagePrefix + "-heartbeat",
		held:     store,
		crashed:  make(chan struct{}),
	}
	s.q = keyqueue.New[txnInfo](keyqueue.Config{
		BatchSize:        cfg.BatchSize,
		BatchLinger:      cfg.BatchLinger,
		Workers:          cfg.Workers,
		MaxInFlight:      cfg.MaxInFlight,
		MaxInFlightBytes: cfg.MaxInFlightBytes,
		DeleteAcked:      cfg.Mode == ModeTable && !cfg.KeepAcked,
		Logger:           s.logger,
	}, &s.mu)
	return s, nil
}

// Concurrency implements relay.Concurrent.
func (s *Source) Concurrency() int { return s.cfg.Workers }

// Stats describes the source's state.
type Stats struct {
	// Pending is how many messages were read from the WAL and are not done yet (queued,
	// being published, waiting for a retry, or for their delete/dead-letter write).
	Pending int
	// PendingPeak is the highest Pending seen. It never exceeds MaxInFlight.
	PendingPeak int
	// PendingBytes is the payload bytes of the pending messages.
	PendingBytes int64
	// InFlightBatches are batches handed to workers and not finished.
	InFlightBatches int
	// ConfirmedLSN is the position confirmed to the server (as text, "16/B374D848").
	ConfirmedLSN string
	// Streaming is true while the source holds the slot and reads from it.
	Streaming bool
	// Reconnects counts replication sessions that ended in an error.
	Reconnects int
}

// Stats returns a snapshot of the source's state.
func (s *Source) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.q.Stats()
	return Stats{
		Pending:         q.Pending,
		PendingPeak:     q.PendingPeak,
		PendingBytes:    q.PendingBytes,
		InFlightBatches: q.InFlightBatches,
		ConfirmedLSN:    s.confirmed.String(),
		Streaming:       s.streaming,
		Reconnects:      s.reconnects,
	}
}

// Next implements relay.Source. It blocks until messages are ready, waits up to BatchLinger
// for the batch to fill (only while other batches are being published), and returns up to
// BatchSize messages. A batch never shares a key with another unfinished batch, and holds a
// key's messages in commit order. Its Finish counts published messages done (in table mode
// once their rows are deleted), dead ones once they are in the dead-letter table; a retried
// message goes back to the head of its key's queue with attempts+1, and the key stays blocked
// until the delay passed.
func (s *Source) Next(ctx context.Context) (relay.Batch, error) { return s.q.Next(ctx) }

// confirmable advances the confirmed position past every leading transaction that is done, and
// reports it, along with whether nothing read is still pending. Called with mu held.
func (s *Source) confirmable() (pglogrepl.LSN, bool) {
	s.q.Confirm(func(t *txnInfo) { s.confirmed = max(s.confirmed, t.end) })
	return s.confirmed, s.q.Unconfirmed() == 0 && s.q.Open() == nil
}

// mark records a position the server has streamed everything before: once every transaction
// read before it is done, it may be confirmed. Called with mu held.
func (s *Source) mark(lsn pglogrepl.LSN) {
	if s.q.Open() != nil || lsn == 0 {
		return // mid-transaction: only the commit gives a safe position
	}
	if t := s.q.Last(); t != nil && t.Info.marker {
		t.Info.end = max(t.Info.end, lsn)
		return
	}
	s.q.Append(txnInfo{end: lsn, marker: true})
}
