package listen

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNoLoadTx is returned by WriteLocked when Config.LoadTx is not set.
var ErrNoLoadTx = errors.New("listen: WriteLocked needs Config.LoadTx")

// unlockTimeout bounds the release of WriteLocked's lock (run even when ctx ended).
const unlockTimeout = 5 * time.Second

// lockPrefix namespaces WriteLocked's advisory lock keys (hashed with the state key).
const lockPrefix = "outbox/listen:"

// WriteLocked is Write serialized per key across the replicas of a PostgreSQL database: on
// a connection of pool it takes the session advisory lock of the key
// (pg_advisory_lock(hashtextextended('outbox/listen:'||key, 0))), runs Write in a
// transaction, commits, fills the cache, and only then releases the lock, so that the next
// writer of the key reads the state this one decided. pool must hold the outbox table of
// Config.Writer and the service's table, which WriteLocked reads with Config.LoadTx (it
// returns ErrNoLoadTx without it): the lock holder uses its one connection only, so
// that writers waiting for the lock, each holding a connection, cannot starve it.
//
// It serializes the decisions only if the next writer can read the decided state: with a
// cache shared by the replicas (redislisten) whose entries outlive the self-consumer's lag,
// or with every write of the key on one replica. Two replicas with in-process caches still
// decide on the table's state, which lags behind the events not yet consumed.
//
// It returns the state decided and the event's token. An error after the commit (the cache
// could not be filled) is returned with them: the write is committed.
func (s *Service) WriteLocked(ctx context.Context, pool *pgxpool.Pool, key string, decide Decide) (State, Token, error) {
	if key == "" {
		return State{}, Token{}, fmt.Errorf("%w: empty key", ErrInvalidState)
	}
	if s.cfg.LoadTx == nil {
		return State{}, Token{}, ErrNoLoadTx
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return State{}, Token{}, fmt.Errorf("listen: acquiring a connection: %w", err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtextextended($1, 0))`, lockPrefix+key); err != nil {
		conn.Release() // a failed or cancelled statement leaves no lock: pgx closes a cancelled connection
		return State{}, Token{}, fmt.Errorf("listen: locking %q: %w", key, err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
		defer cancel()
		var unlocked bool
		err := conn.QueryRow(uctx, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, lockPrefix+key).Scan(&unlocked)
		if err != nil || !unlocked {
			// Ending the session releases its locks.
			s.log.WarnContext(ctx, "listen: releasing the key's lock failed; closing the connection", "key", key, "error", err)
			_ = conn.Hijack().Close(uctx)
			return
		}
		conn.Release()
	}()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return State{}, Token{}, fmt.Errorf("listen: beginning the write of %q: %w", key, err)
	}
	p, err := s.Write(ctx, tx, key, decide)
	if err != nil {
		return State{}, Token{}, errors.Join(err, tx.Rollback(context.WithoutCancel(ctx)))
	}
	if err := tx.Commit(ctx); err != nil {
		return State{}, Token{}, fmt.Errorf("listen: committing the write of %q: %w", key, err)
	}
	return p.State(), p.Token(), p.Committed(ctx)
}
