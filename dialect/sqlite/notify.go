package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	sqlitedrv "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/outboxgo/outbox/dialect"
)

// DefaultWatchInterval is how often Listen reads PRAGMA data_version by default, to notice
// commits made outside the Store's own connections.
const DefaultWatchInterval = 10 * time.Millisecond

// After a commit with outbox inserts on one of the Store's connections, Listen reads
// data_version at once, then hotFirst later, doubling up to hotMax, for at most hotFor: the
// commit hook runs just before the commit is durable and visible, so the commit shows as a
// change of data_version a little later.
const (
	hotFirst = 50 * time.Microsecond
	hotMax   = 2 * time.Millisecond
	hotFor   = 250 * time.Millisecond
)

var _ dialect.Notifier = (*Store)(nil)

// commitSignals tells the Store's listeners that a transaction which inserted into the
// outbox table is committing on one of the Store's connections.
type commitSignals struct {
	mu   sync.Mutex
	subs map[chan struct{}]struct{}
}

func (c *commitSignals) subscribe() chan struct{} {
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.subs == nil {
		c.subs = map[chan struct{}]struct{}{}
	}
	c.subs[ch] = struct{}{}
	return ch
}

func (c *commitSignals) unsubscribe(ch chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.subs, ch)
}

// signal never blocks: it runs inside SQLite's commit hook, on the committing goroutine.
func (c *commitSignals) signal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for ch := range c.subs {
		select {
		case ch <- struct{}{}:
		default: // already pending
		}
	}
}

// hookConnector opens the Store's connections with SQLite hooks that signal commits of
// transactions that inserted into the outbox table (through the Writer, plain SQL or
// RetryDeadLetters alike).
type hookConnector struct {
	driver.Connector
	table   string
	signals *commitSignals
}

// Connect implements driver.Connector.
func (c *hookConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	h, ok := conn.(sqlitedrv.HookRegisterer)
	if !ok {
		return conn, nil // polling and data_version still work
	}
	// database/sql hands a connection to one goroutine at a time, and the hooks run on the
	// goroutine using it: inserted needs no lock.
	inserted := false
	h.RegisterPreUpdateHook(func(d sqlitedrv.SQLitePreUpdateData) {
		if d.Op == sqlite3.SQLITE_INSERT && d.DatabaseName == "main" && strings.EqualFold(d.TableName, c.table) {
			inserted = true
		}
	})
	h.RegisterCommitHook(func() int32 {
		if inserted {
			inserted = false
			c.signals.signal()
		}
		return 0 // let the commit proceed
	})
	h.RegisterRollbackHook(func() { inserted = false })
	return conn, nil
}

// Listen implements dialect.Notifier: it calls wake(nil) after commits, until ctx ends.
//
// It watches PRAGMA data_version on a connection of its own, which changes whenever another
// connection commits: every wake follows a read that saw the commit, so a claim started
// after the wake sees the commit's rows. Commits that inserted into the outbox table through
// the Store's own connections (a Store opened with Path; the in-process case) are signalled
// by SQLite's commit hook, and Listen then reads data_version within microseconds, until
// the commit shows. Commits from elsewhere (another process, the sqlite3 shell, a DB given
// in Config.DB) are seen at the next read, every WatchInterval. Changes also come from
// commits that inserted no message (the relay's own deletes, business writes): those wake
// workers for a claim that finds nothing, at most once per read.
//
// SQLite gives no key hashes: every worker wakes. A lost watcher connection is reopened
// (with wake(nil) once after, for what was missed meanwhile). A database without a file (in
// memory) cannot be watched: Listen logs it and leaves the workers to their poll interval.
func (s *Store) Listen(ctx context.Context, wake func(keyHashes []uint64)) error {
	commits := s.signals.subscribe()
	defer s.signals.unsubscribe(commits)
	return dialect.Reconnect(ctx, s.logger, "outbox commit watcher lost; polling covers the gap while it reopens",
		func(ctx context.Context, connected func()) error {
			err := s.watch(ctx, commits, wake, connected)
			if errors.Is(err, errNoFile) && ctx.Err() == nil {
				s.logger.Warn("outbox commit watcher off: the database has no file; workers poll", slog.Any("error", err))
				<-ctx.Done()
			}
			return err
		})
}

var errNoFile = errors.New("no database file")

// watchFile returns the database file to watch: Path, or the main database's file of a DB
// given in Config.DB.
func (s *Store) watchFile(ctx context.Context) (string, error) {
	if s.path != "" {
		return s.path, nil
	}
	var file string
	if err := s.db.QueryRowContext(ctx, `SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&file); err != nil {
		return "", fmt.Errorf("finding the database file: %w", err)
	}
	if file == "" {
		return "", errNoFile
	}
	return file, nil
}

func (s *Store) watch(ctx context.Context, commits <-chan struct{}, wake func([]uint64), connected func()) error {
	file, err := s.watchFile(ctx)
	if err != nil {
		return err
	}
	// Its own database, of one connection: data_version is per connection, and the watcher
	// must not take a connection from a pool the application may have limited. It only reads,
	// so it sets no journal mode or transaction lock.
	c, err := sqlitedrv.NewConnector(watchDSN(file))
	if err != nil {
		return fmt.Errorf("opening %s: %w", file, err)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("opening %s: %w", file, err)
	}
	defer conn.Close()
	read := func() (int64, error) {
		var v int64
		if err := conn.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&v); err != nil {
			return 0, fmt.Errorf("reading data_version: %w", err)
		}
		return v, nil
	}
	last, err := read()
	if err != nil {
		return err
	}
	connected()
	wake(nil) // anything committed while no one was watching

	var (
		hot      bool // a signalled commit may not show yet: read often
		hotUntil time.Time
		step     time.Duration
		reads    int // reads since the last signal
	)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		var tick <-chan time.Time
		switch {
		case hot:
			t.Reset(step)
			step = min(2*step, hotMax)
			tick = t.C
		case s.watchInterval > 0:
			t.Reset(s.watchInterval)
			tick = t.C
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-commits:
			hot, hotUntil, step, reads = true, time.Now().Add(hotFor), hotFirst, 0
		case <-tick:
		}
		v, err := read()
		if err != nil {
			return err
		}
		reads++
		if v != last {
			last = v
			wake(nil)
			// Writers are serialised: a change seen by a read after the first one following
			// the signal is the signalled commit or a later one, so the signalled commit
			// shows. (The first read's change may be an earlier commit.)
			if reads >= 2 {
				hot = false
			}
		}
		if hot && time.Now().After(hotUntil) {
			hot = false // the commit failed, or was seen before the signal was read
		}
	}
}

// watchDSN is the data source name of the watcher's connection: the file, read only, with a
// busy timeout.
func watchDSN(path string) string { return fileURI(path) + "?_busy_timeout=10000&_query_only=1" }
