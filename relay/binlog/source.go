package binlog

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/mysql"
	"github.com/outboxgo/outbox/internal/sqlident"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/internal/keyqueue"
)

// Source tails a MariaDB or MySQL binary log and hands the messages inserted into the outbox
// table to the relay. It implements relay.Source, relay.Runner and relay.Concurrent: Run drives
// the replication connection, Next and Finish serve the relay's workers.
type Source struct {
	cfg    Config
	repl   *gomysql.Config // the replication connection
	table  sqlident.Table
	held   dialect.HeldWriter // deletes, dead letters, broker duplicates: the mysql store
	logger *slog.Logger

	running atomic.Bool
	crashed chan struct{} // closed by tests to simulate a crash
	kill    atomic.Pointer[func()]

	mu sync.Mutex
	// q holds the messages read and not done. A new session resets it: the session streams
	// again from the saved position.
	q          *keyqueue.Queue[txnInfo]
	streaming  bool
	standby    bool
	reconnects int

	// The confirmed position: everything before it is done.
	confFile string
	confPos  uint32
	gtids    *gtidTracker
	urgent   bool // outbox messages were confirmed since the last save
	moved    bool // other traffic moved the position since the last save
	saved    Position
	flavor   string // of the session's server

	// The last event read, for Lag: the stream loop writes it per event.
	readMu   sync.Mutex
	lastRead readPoint
	// behindSince is when Lag first saw the server past lastRead since it last found the
	// source caught up (zero: caught up). Guarded by readMu.
	behindSince time.Time
}

// txnInfo is what the source records of a transaction read from the stream, or of a position
// marker (a rotation).
type txnInfo struct {
	file    string // end coordinates, set at the commit
	pos     uint32
	gtid    gtidOf
	begun   bool // a multi-statement transaction (not a standalone statement)
	outbox  bool // held outbox rows
	self    bool // wrote the position table
	foreign bool // changed anything else
}

type (
	txn   = keyqueue.Txn[txnInfo]
	ackOp = keyqueue.Ack[txnInfo]
)

var (
	_ relay.Source     = (*Source)(nil)
	_ relay.Runner     = (*Source)(nil)
	_ relay.Concurrent = (*Source)(nil)
)

// New validates cfg and returns a Source. It does not connect: Run does, and Setup can be
// called first to save the starting position before producers start.
func New(cfg Config) (*Source, error) {
	mc, t, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	store, err := mysql.New(context.Background(), mysql.Config{DB: cfg.DB, Table: cfg.Table, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	s := &Source{
		cfg:     cfg,
		repl:    mc,
		table:   t,
		held:    store,
		logger:  cfg.Logger.With(slog.String("source", cfg.Name)),
		crashed: make(chan struct{}),
	}
	s.q = keyqueue.New[txnInfo](keyqueue.Config{
		BatchSize:        cfg.BatchSize,
		BatchLinger:      cfg.BatchLinger,
		Workers:          cfg.Workers,
		MaxInFlight:      cfg.MaxInFlight,
		MaxInFlightBytes: cfg.MaxInFlightBytes,
		DeleteAcked:      !cfg.KeepAcked,
		Logger:           s.logger,
	}, &s.mu)
	return s, nil
}

// Concurrency implements relay.Concurrent.
func (s *Source) Concurrency() int { return s.cfg.Workers }

// Stats describes the source's state.
type Stats struct {
	// Pending is how many messages were read from the binary log and are not done yet
	// (queued, being published, waiting for a retry, or for their delete/dead-letter write).
	Pending int
	// PendingPeak is the highest Pending seen. It never exceeds MaxInFlight.
	PendingPeak int
	// PendingBytes is the payload bytes of the pending messages.
	PendingBytes int64
	// InFlightBatches are batches handed to workers and not finished.
	InFlightBatches int
	// Saved is the position last saved (or read at the start of the session).
	Saved Position
	// Streaming is true while the source holds the lock and reads the binary log.
	Streaming bool
	// Standby is true while another source of the same name holds the lock.
	Standby bool
	// Reconnects counts sessions that ended in an error.
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
		Saved:           s.saved,
		Streaming:       s.streaming,
		Standby:         s.standby,
		Reconnects:      s.reconnects,
	}
}

// Next implements relay.Source. It blocks until messages are ready, waits up to BatchLinger
// for the batch to fill (only while other batches are being published), and returns up to
// BatchSize messages. A batch never shares a key with another unfinished batch, and holds a
// key's messages in commit order. Its Finish counts published messages done once their rows
// are deleted (at once with KeepAcked), dead ones once they are in the dead-letter table; a
// retried message goes back to the head of its key's queue with attempts+1, and the key stays
// blocked until the delay passed.
func (s *Source) Next(ctx context.Context) (relay.Batch, error) { return s.q.Next(ctx) }

// overloaded reports whether the stream loop should stop reading: too many messages pending,
// or too many transactions waiting behind an unfinished one. Called with mu held.
func (s *Source) overloaded() bool {
	return s.q.Overloaded() || s.q.Unconfirmed() >= s.maxTxns()
}

// maxTxns bounds the transactions queued behind an unfinished one (mostly other tables'
// transactions, which hold no message): their positions wait to be confirmed.
func (s *Source) maxTxns() int { return max(10*s.cfg.MaxInFlight, 10000) }

// confirm advances the confirmed position past every leading transaction that is done. Called
// with mu held.
func (s *Source) confirm() { s.q.Confirm(s.pass) }

// pass moves the confirmed position past t. Called with mu held.
func (s *Source) pass(t *txnInfo) {
	if t.file != "" {
		s.confFile, s.confPos = t.file, t.pos
	}
	if s.gtids != nil {
		s.gtids.add(t.gtid)
	}
	switch {
	case t.outbox:
		s.urgent = true
	case t.self && !t.foreign:
		// The source's own position write: saving past it would only write again.
	default:
		s.moved = true
	}
}

// confirmed is the confirmed position. Called with mu held.
func (s *Source) confirmed() Position {
	p := Position{File: s.confFile, Pos: s.confPos}
	if s.gtids != nil {
		p.GTID = s.gtids.String()
	}
	return p
}

// reset forgets everything read in the ended session: the next one streams it again from the
// saved position. Called with mu held.
func (s *Source) reset() {
	s.q.Reset()
	s.urgent, s.moved = false, false
}
