package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		// URLs: password, lone user (a token), path and query.
		`dial postgres://app:hunter2@db:5432/shop?sslmode=disable: refused`: `dial postgres://app:xxxxx@db:5432/…: refused`,
		`Post "https://hooks.example/T0/B0/hunter2": timeout`:               `Post "https://hooks.example/…": timeout`,
		`redis://:hunter2@h:6379.`:                                          `redis://:xxxxx@h:6379.`,
		`amqp://hunter2@rabbit/`:                                            `amqp://xxxxx@rabbit/`,
		// user:password@ without a scheme.
		`broker relay:hunter2@k:9092 unreachable`: `broker relay:xxxxx@k:9092 unreachable`,
		`app:hunter2@tcp(db:3306)/shop`:           `app:xxxxx@tcp(db:3306)/shop`,
		`:hunter2@h:6379`:                         `:xxxxx@h:6379`,
		// key=value pairs naming a secret: keyword DSNs, query strings.
		`host=db user=app password=hunter2 dbname=shop`:    `host=db user=app password=xxxxx dbname=shop`,
		`host=db password='hunter2 with spaces' sslmode=x`: `host=db password=xxxxx sslmode=x`,
		`x?sslpassword=hunter2&token=hunter2&user=a`:       `x?sslpassword=xxxxx&token=xxxxx&user=a`,
		`API_KEY=hunter2 db_password = hunter2`:            `API_KEY=xxxxx db_password = xxxxx`,
		`client_secret="hunter2"`:                          `client_secret=xxxxx`,
		// Left alone.
		`key=o-1 topic=orders.created attempts=3`: `key=o-1 topic=orders.created attempts=3`,
		`sqlite:data/outbox.db`:                   `sqlite:data/outbox.db`,
		`user@example.com at 12:30`:               `user@example.com at 12:30`,
		`nats://127.0.0.1:4222`:                   `nats://127.0.0.1:4222`,
		``:                                        ``,
	} {
		got := Redact(in)
		if got != want {
			t.Errorf("Redact(%q)\n = %q\nwant %q", in, got, want)
		}
		if strings.Contains(got, "hunter2") {
			t.Errorf("Redact(%q) keeps the secret", in)
		}
	}
}

// TestKeywordDSNNeverPrinted: a keyword DSN in database_url is refused without its password,
// and Get shows it redacted.
func TestKeywordDSNNeverPrinted(t *testing.T) {
	t.Parallel()
	const dsn = "host=db user=app password=hunter2 dbname=shop"
	_, err := Load(LoadOptions{Getenv: env("OUTBOX_DATABASE_URL", dsn)})
	wantConfigError(t, err, "database_url", "must start with postgres://")
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error shows the password: %v", err)
	}
	c := Default()
	c.DatabaseURL = dsn
	if v, _ := c.Get("database_url"); strings.Contains(v, "hunter2") {
		t.Fatalf("Get shows the password: %q", v)
	}
}

func TestUnknownEnvironmentVariable(t *testing.T) {
	t.Parallel()
	base := []string{"OUTBOX_DATABASE_URL=" + pgURL, "HOME=/root", "OUTBOX_CONFIG=", "OUTBOX_TEST_DATABASE_URL=x", "OUTBOX_BENCH_SECONDS=3",
		"OUTBOX_UNKNOWN_BUT_EMPTY="}
	getenv := func(environ []string) func(string) string {
		return func(k string) string {
			for _, kv := range environ {
				if name, v, _ := strings.Cut(kv, "="); name == k {
					return v
				}
			}
			return ""
		}
	}
	if _, err := Load(LoadOptions{Getenv: getenv(base), Environ: base}); err != nil {
		t.Fatalf("documented variables refused: %v", err)
	}
	for _, tt := range []struct{ name, reason string }{
		{"OUTBOX_POLL_BATCHSIZE", "did you mean OUTBOX_POLL_BATCH_SIZE?"},
		{"OUTBOX_SINK_NATS_URLS", "did you mean OUTBOX_SINK_NATS_URL?"},
		{"OUTBOX_WHATEVER_THIS_IS", "unknown environment variable"},
	} {
		environ := append(base, tt.name+"=1")
		_, err := Load(LoadOptions{Getenv: getenv(environ), Environ: environ})
		wantConfigError(t, err, tt.name, tt.reason)
	}
	// A YAML-only setting keeps its own error.
	environ := append(base, "OUTBOX_SINK_KAFKA_TOPICS=a=b")
	_, err := Load(LoadOptions{Getenv: getenv(environ), Environ: environ})
	wantConfigError(t, err, "sink.kafka.topics", "can only be set in the YAML file")
}

func TestConfigFileLimits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	load := func(file string) error {
		_, err := Load(LoadOptions{File: file, Getenv: env("OUTBOX_DATABASE_URL", pgURL), Environ: []string{}})
		return err
	}
	exact := filepath.Join(dir, "exact.yaml")
	body := "table: outbox\n"
	if err := os.WriteFile(exact, []byte(body+"#"+strings.Repeat("x", MaxFileSize-len(body)-2)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := load(exact); err != nil {
		t.Fatalf("a file of exactly MaxFileSize refused: %v", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, MaxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	wantConfigError(t, load(big), fileField, "larger than 1048576 bytes")
	wantConfigError(t, load(dir), fileField, "is a directory")

	start := time.Now()
	wantConfigError(t, load("/dev/zero"), fileField, "is a device")
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("/dev/zero took %s", d)
	}

	// A pipe endlessly fed is read up to the limit, then refused.
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	fed := make(chan int64, 1)
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			fed <- -1
			return
		}
		defer f.Close()
		var n int64
		chunk := make([]byte, 64<<10)
		for {
			w, err := f.Write(chunk)
			n += int64(w)
			if err != nil {
				fed <- n
				return
			}
		}
	}()
	err := load(fifo)
	wantConfigError(t, err, fileField, "larger than")
	if n := <-fed; n > 4*MaxFileSize {
		t.Fatalf("wrote %d bytes into the pipe: the reader did not stop at the limit", n)
	}
	if !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Fatal(err)
	}
}
