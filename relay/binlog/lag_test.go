package binlog_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/outboxgo/outbox/internal/testutil/sourcetest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/binlog"
)

// TestLag: the lag grows while the relay is behind (its sink holds the first message, the
// source stops reading at MaxInFlight while producers go on), and returns to 0 once it
// caught up.
func TestLag(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	cfg := e.config(t)
	cfg.BatchSize, cfg.Workers, cfg.MaxInFlight = 1, 1, 1
	src := e.source(t, cfg)
	if _, err := src.Lag(ctx); !errors.Is(err, binlog.ErrNotStreaming) {
		t.Fatalf("Lag before Run: %v, want ErrNotStreaming", err)
	}
	if err := src.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	sk := sourcetest.NewSink()
	sk.Gate = make(chan struct{})
	sourcetest.StartRelay(t, src, sk, relay.Config{})
	lag := func() binlog.Lag {
		t.Helper()
		l, err := src.Lag(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	sourcetest.WaitFor(t, 30*time.Second, "streaming", func() bool { return src.Stats().Streaming })
	sourcetest.WaitFor(t, 10*time.Second, "caught up", func() bool { l := lag(); return l.Bytes == 0 && l.Seconds == 0 })

	// An idle spell: the commits that end it are not its length behind.
	time.Sleep(2 * time.Second)
	n := len(e.produce(t, 5, 0, 4, 1)) // 20 transactions
	sourcetest.WaitFor(t, 10*time.Second, "the first publish", func() bool { return sk.Calls.Load() > 0 })
	first := lag()
	if first.Bytes <= 0 {
		t.Fatalf("behind by %+v, want bytes > 0", first)
	}
	if first.Seconds >= 1 {
		t.Fatalf("behind by %+v just after an idle spell of 2s: the spell counted as lag", first)
	}
	time.Sleep(2500 * time.Millisecond)
	e.produce(t, 1, 4, 1, 1) // more traffic (k0 4): the server moves on
	second := lag()
	t.Logf("behind: %+v, then %+v", first, second)
	if second.Bytes <= first.Bytes || second.Seconds < 2 || second.Seconds <= first.Seconds {
		t.Fatalf("lag did not grow: %+v, then %+v", first, second)
	}
	if second.Read.File == "" || second.Server.File == "" {
		t.Fatalf("positions unknown: %+v", second)
	}

	close(sk.Gate)
	sk.Await(t, 30*time.Second, "every message", n+1)
	// The source's own deletes and position saves are events it reads too: it catches up.
	sourcetest.WaitFor(t, 10*time.Second, "caught up again", func() bool { l := lag(); return l.Bytes == 0 && l.Seconds == 0 })
}

// TestLagAcrossFiles: from a position in an earlier binary log file, the lag counts the rest
// of that file, every file after it and the current one up to the server's position, as
// SHOW BINARY LOGS lists their sizes.
func TestLagAcrossFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	files := binaryLogs(t, e)
	if len(files) < 2 {
		t.Skip("the server has one binary log file: no rotation to measure across")
	}
	src := e.source(t, e.config(t))
	from := files[len(files)-2] // the file before the current one, complete
	n, srv, err := src.LagFrom(ctx, from.name, 4)
	if err != nil {
		t.Fatal(err)
	}
	if srv.File != files[len(files)-1].name {
		t.Skipf("the server rotated meanwhile (to %s)", srv.File)
	}
	if want := from.size - 4 + int64(srv.Pos); n != want {
		t.Fatalf("lag from %s:4 to %s: %d bytes, want %d (%+v)", from.name, srv, n, want, files)
	}
}

type binaryLog struct {
	name string
	size int64
}

// binaryLogs lists the server's binary log files (SHOW BINARY LOGS).
func binaryLogs(t *testing.T, e *env) []binaryLog {
	t.Helper()
	rows, err := e.db.QueryContext(context.Background(), `SHOW BINARY LOGS`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var files []binaryLog
	for rows.Next() {
		var f binaryLog
		dest := []any{&f.name, &f.size}
		for range len(cols) - 2 {
			dest = append(dest, new(any))
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return files
}
