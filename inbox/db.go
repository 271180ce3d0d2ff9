package inbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
)

// runner runs statements on a pool, a connection or a transaction of either driver.
type runner interface {
	exec(ctx context.Context, q string, args ...any) (int64, error)
	queryRow(ctx context.Context, q string, args ...any) row
	query(ctx context.Context, q string, args []any, each func(scan func(...any) error) error) error
}

type row interface{ Scan(dest ...any) error }

// handle is the inbox's own database: a runner that also opens transactions.
type handle interface {
	runner
	inTx(ctx context.Context, fn func(runner) error) error
	// inTxOf is inTx that also hands fn the transaction itself, for handlers.
	inTxOf(ctx context.Context, fn func(outbox.Tx, runner) error) error
}

// pgxQuerier is what a pgx pool, connection and transaction share.
type pgxQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

type pgxRunner struct{ q pgxQuerier }

func (r pgxRunner) exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := r.q.Exec(ctx, q, args...)
	return tag.RowsAffected(), err
}

func (r pgxRunner) queryRow(ctx context.Context, q string, args ...any) row {
	return r.q.QueryRow(ctx, q, args...)
}

func (r pgxRunner) query(ctx context.Context, q string, args []any, each func(func(...any) error) error) error {
	rows, err := r.q.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := each(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}

type pgxBeginner interface {
	pgxQuerier
	Begin(ctx context.Context) (pgx.Tx, error)
}

type pgxHandle struct{ p pgxBeginner }

func (h pgxHandle) exec(ctx context.Context, q string, args ...any) (int64, error) {
	return pgxRunner{h.p}.exec(ctx, q, args...)
}

func (h pgxHandle) queryRow(ctx context.Context, q string, args ...any) row {
	return pgxRunner{h.p}.queryRow(ctx, q, args...)
}

func (h pgxHandle) query(ctx context.Context, q string, args []any, each func(func(...any) error) error) error {
	return pgxRunner{h.p}.query(ctx, q, args, each)
}

func (h pgxHandle) inTx(ctx context.Context, fn func(runner) error) error {
	return pgx.BeginFunc(ctx, h.p, func(tx pgx.Tx) error { return fn(pgxRunner{tx}) })
}

func (h pgxHandle) inTxOf(ctx context.Context, fn func(outbox.Tx, runner) error) error {
	return pgx.BeginFunc(ctx, h.p, func(tx pgx.Tx) error { return fn(tx, pgxRunner{tx}) })
}

// sqlQuerier is what *sql.DB, *sql.Conn and *sql.Tx share.
type sqlQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

type sqlRunner struct{ q sqlQuerier }

func (r sqlRunner) exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := r.q.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (r sqlRunner) queryRow(ctx context.Context, q string, args ...any) row {
	return r.q.QueryRowContext(ctx, q, args...)
}

func (r sqlRunner) query(ctx context.Context, q string, args []any, each func(func(...any) error) error) error {
	rows, err := r.q.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := each(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}

type sqlHandle struct{ db *sql.DB }

func (h sqlHandle) exec(ctx context.Context, q string, args ...any) (int64, error) {
	return sqlRunner{h.db}.exec(ctx, q, args...)
}

func (h sqlHandle) queryRow(ctx context.Context, q string, args ...any) row {
	return sqlRunner{h.db}.queryRow(ctx, q, args...)
}

func (h sqlHandle) query(ctx context.Context, q string, args []any, each func(func(...any) error) error) error {
	return sqlRunner{h.db}.query(ctx, q, args, each)
}

func (h sqlHandle) inTx(ctx context.Context, fn func(runner) error) error {
	return h.inTxOf(ctx, func(_ outbox.Tx, r runner) error { return fn(r) })
}

func (h sqlHandle) inTxOf(ctx context.Context, fn func(outbox.Tx, runner) error) error {
	tx, err := h.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx, sqlRunner{tx}); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// pgxTx and sqlTx are what Process needs of the consumer's transaction. Requiring Commit
// keeps out pools and connections, as outbox.Enqueue does.
type pgxTx interface {
	pgxQuerier
	Commit(ctx context.Context) error
}

type sqlTx interface {
	sqlQuerier
	Commit() error
}

// txRunner returns the runner of the consumer's transaction tx.
func (in *Inbox) txRunner(tx outbox.Tx) (runner, error) {
	switch tx := tx.(type) {
	case pgxTx:
		if in.cfg.Dialect != outbox.Postgres {
			return nil, fmt.Errorf("%w: a pgx transaction needs the postgres dialect, inbox is %s", outbox.ErrUnsupportedTx, in.cfg.Dialect)
		}
		return pgxRunner{tx}, nil
	case sqlTx:
		return sqlRunner{tx}, nil
	default:
		return nil, fmt.Errorf("%w: %T (want a transaction: pgx.Tx or *sql.Tx)", outbox.ErrUnsupportedTx, tx)
	}
}

func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) || errors.Is(err, pgx.ErrNoRows) }

// inTxFirst is inTxOf whose transaction's BEGIN and first statement (which first queues on
// the batch) reach the server in one round trip (pgx.Batch.BeginTx), on a connection of the
// pool: the inbox's record of a delivery then costs the consumer no round trip of its own.
// fn runs once the batch's results (first's callbacks) are in.
// An error of the batch is wrapped as "inbox: <what>: ...".
func (h pgxHandle) inTxFirst(ctx context.Context, what string, first func(*pgx.Batch), fn func(outbox.Tx, runner) error) (err error) {
	c, tx, err := h.beginBatch(ctx, what, first)
	if err != nil {
		return err
	}
	// A connection left in a transaction (a rollback that failed) is destroyed, not reused.
	defer c.Release()
	defer func() {
		if rerr := tx.Rollback(ctx); rerr != nil && !errors.Is(rerr, pgx.ErrTxClosed) && err == nil {
			err = rerr
		}
	}()
	if err := fn(tx, pgxRunner{tx}); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// txBatch sends, on a connection of the pool, a batch that begins a transaction and holds
// all of it: queue queues its statements, the last of them its commit. If the batch fails,
// the transaction is rolled back. An error of the batch is wrapped as "inbox: <what>: ...".
func (h pgxHandle) txBatch(ctx context.Context, what string, queue func(*pgx.Batch)) error {
	c, _, err := h.beginBatch(ctx, what, queue)
	if err != nil {
		return err
	}
	c.Release()
	return nil
}

// beginBatch acquires a connection of the pool and sends on it a batch that begins a
// transaction, with the statements queue queues, and reads its results. It returns the
// connection, for the caller to release, and the transaction. If the batch fails, the
// transaction is rolled back, the connection released and the error wrapped as
// "inbox: <what>: ...".
func (h pgxHandle) beginBatch(ctx context.Context, what string, queue func(*pgx.Batch)) (*pgxpool.Conn, pgx.Tx, error) {
	pool, ok := h.p.(*pgxpool.Pool)
	if !ok {
		return nil, nil, errors.New("inbox: a pipelined transaction needs a pool")
	}
	c, err := pool.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	var b pgx.Batch
	b.BeginTx(pgx.TxOptions{})
	queue(&b)
	br := c.SendBatch(ctx, &b)
	tx := br.Tx()
	if err := br.Close(); err != nil {
		_ = tx.Rollback(ctx) // closed already if the batch ended outside a transaction
		c.Release()          // destroyed by the pool if still in a transaction
		return nil, nil, fmt.Errorf("inbox: %s: %w", what, err)
	}
	return c, tx, nil
}
