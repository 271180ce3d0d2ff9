// Package natstest holds test helpers for code that talks to NATS JetStream: a connection to the
// shared test server, a private stream per test, and an in-process server that can be stopped
// and restarted on the same port and store directory for outage tests.
package natstest

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/outboxgo/outbox/internal/testutil/service"
)

// DefaultURL is the shared test server used when NATS_URL is not set.
const DefaultURL = "nats://127.0.0.1:4222"

// URL returns the address of the shared test server: $NATS_URL, else DefaultURL.
func URL() string {
	if u := os.Getenv("NATS_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// Connect connects to the shared test server and closes the connection when the test ends.
// It fails the test, never skips it, when the server is unreachable or has no JetStream:
// integration tests that silently skip hide a broken CI. With -short it skips the test (see
// package internal/testutil/service); StartServer's in-process servers need no service.
func Connect(t testing.TB) *natsgo.Conn {
	t.Helper()
	service.Require(t, "the NATS JetStream server at "+URL())
	return ConnectURL(t, URL())
}

// ConnectURL is Connect for a given server address.
func ConnectURL(t testing.TB, url string) *natsgo.Conn {
	t.Helper()
	nc, err := natsgo.Connect(url, natsgo.Name("outbox-test"), natsgo.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("natstest: connecting to NATS at %s (start nats-server -js, or set NATS_URL): %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatalf("natstest: NATS at %s has no usable JetStream (start nats-server with -js): %v", url, err)
	}
	return nc
}

// StreamOption edits the stream configuration before Stream creates it.
type StreamOption func(*jetstream.StreamConfig)

// Stream creates a stream private to the test, capturing every subject under the returned
// prefix, and deletes it when the test ends. The prefix ends with a dot, so prefix+"orders"
// is a subject of the stream; use it as a sink's SubjectPrefix. The stream uses file storage,
// like a production stream, unless an option says otherwise.
func Stream(t testing.TB, nc *natsgo.Conn, opts ...StreamOption) (streamName, subjectPrefix string) {
	t.Helper()
	id := nuid.Next()
	streamName = "T_" + sanitize(t.Name()) + "_" + id
	subjectPrefix = "t." + id + "."
	cfg := jetstream.StreamConfig{
		Name:     streamName,
		Subjects: []string{subjectPrefix + ">"},
		Storage:  jetstream.FileStorage,
	}
	for _, o := range opts {
		o(&cfg)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The shared server removes an account's streams directory when its last stream is
	// deleted; a create racing that removal (parallel tests) fails with "error creating store
	// for stream" (JSStreamStoreFailedErr). Such a failure is the server's: try again.
	for attempt := 1; ; attempt++ {
		_, err := js.CreateStream(ctx, cfg)
		if err == nil {
			break
		}
		var apiErr *jetstream.APIError
		if attempt < 5 && errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrStreamStoreFailed {
			t.Logf("natstest: creating stream %s: %v; trying again", streamName, err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		t.Fatalf("natstest: creating stream %s: %v", streamName, err)
	}
	url := nc.ConnectedUrl()
	t.Cleanup(func() {
		// A fresh connection: the test's own may already be closed by its cleanups.
		nc2, err := natsgo.Connect(url, natsgo.Name("outbox-test-cleanup"))
		if err != nil {
			t.Logf("natstest: deleting stream %s: %v", streamName, err)
			return
		}
		defer nc2.Close()
		js2, err := jetstream.New(nc2)
		if err != nil {
			t.Logf("natstest: deleting stream %s: %v", streamName, err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := js2.DeleteStream(ctx, streamName); err != nil {
			t.Logf("natstest: deleting stream %s: %v", streamName, err)
		}
	})
	return streamName, subjectPrefix
}

// sanitize keeps a test name usable in a stream name (no dots, spaces, wildcards or slashes)
// and short enough for the server's 255-character limit.
func sanitize(name string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 100 {
			break
		}
	}
	return b.String()
}

// Server is an in-process nats-server with JetStream. Shutdown stops it like a crashed or
// stopped broker; Restart brings it back on the same port with the same store directory, so
// file-backed streams and their messages survive.
type Server struct {
	t    testing.TB
	mu   sync.Mutex
	opts *server.Options
	srv  *server.Server
}

// StartServer starts an in-process server and shuts it down when the test ends. opts may be
// nil. JetStream is always enabled; an empty Host means 127.0.0.1, Port 0 a random free port,
// an empty StoreDir a t.TempDir(). Logging is off unless opts turns it on.
func StartServer(t testing.TB, opts *server.Options) *Server {
	t.Helper()
	var o *server.Options
	if opts == nil {
		o = &server.Options{NoLog: true}
	} else {
		o = opts.Clone()
	}
	o.JetStream = true
	o.NoSigs = true
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = server.RANDOM_PORT
	}
	if o.StoreDir == "" {
		o.StoreDir = t.TempDir()
	}
	s := &Server{t: t, opts: o}
	s.start()
	// Later starts reuse the port the first one got, so clients reconnect to the same URL.
	s.opts.Port = s.srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(s.Shutdown)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	srv, err := server.NewServer(s.opts.Clone())
	if err != nil {
		s.t.Fatalf("natstest: creating server: %v", err)
	}
	if !s.opts.NoLog {
		srv.ConfigureLogger()
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		s.t.Fatalf("natstest: server on port %d not ready within 10s", s.opts.Port)
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
}

// URL is the client URL of the server; it stays the same across restarts.
func (s *Server) URL() string {
	return "nats://" + net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port))
}

// StoreDir is the JetStream store directory, kept across restarts.
func (s *Server) StoreDir() string { return s.opts.StoreDir }

// Running returns the current server, or nil while it is shut down.
func (s *Server) Running() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

// Shutdown stops the server and waits until it has stopped. It does nothing when the server
// is already down.
func (s *Server) Shutdown() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Shutdown()
	srv.WaitForShutdown()
}

// Restart starts the server again on the same port and store directory, shutting it down
// first if it is running. Connections that reconnect forever come back on their own.
func (s *Server) Restart() {
	s.t.Helper()
	s.Shutdown()
	s.start()
}

// RestartWith is Restart with edit applied to the server's options first (other users or
// tokens, say); the port and store directory stay the same, and later restarts keep the
// edit.
func (s *Server) RestartWith(edit func(*server.Options)) {
	s.t.Helper()
	s.Shutdown()
	edit(s.opts)
	s.start()
}

// jsErrStreamStoreFailed is the server's JSStreamStoreFailedErr (nats.go names no constant).
const jsErrStreamStoreFailed jetstream.ErrorCode = 10049
