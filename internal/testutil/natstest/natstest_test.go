package natstest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox/internal/testutil/natstest"
)

// TestRestartKeepsStore: messages in a file-backed stream survive a restart, on the same
// URL, and a client that reconnects forever comes back by itself.
func TestRestartKeepsStore(t *testing.T) {
	t.Parallel()
	srv := natstest.StartServer(t, nil)
	url := srv.URL()
	reconnected := make(chan struct{}, 1)
	nc, err := natsgo.Connect(url, natsgo.MaxReconnects(-1), natsgo.ReconnectWait(50*time.Millisecond),
		natsgo.ReconnectHandler(func(*natsgo.Conn) {
			select {
			case reconnected <- struct{}{}:
			default:
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	stream, prefix := natstest.Stream(t, nc)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, prefix+"a", []byte("before")); err != nil {
		t.Fatal(err)
	}

	srv.Shutdown()
	if srv.Running() != nil {
		t.Fatal("Running() is not nil after Shutdown")
	}
	srv.Shutdown() // idempotent
	srv.Restart()
	if srv.URL() != url {
		t.Fatalf("URL changed across restart: %s -> %s", url, srv.URL())
	}
	// Wait for the reconnect itself: right after the restart the client may not have noticed
	// the cut yet (IsConnected still true), and a request sent then is lost with the socket.
	select {
	case <-ctx.Done():
		t.Fatal("client did not reconnect")
	case <-reconnected:
	}
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(ctx, prefix+"a")
	if err != nil || string(m.Data) != "before" {
		t.Fatalf("message after restart: %v, %v", m, err)
	}
}

func TestStreamIsPrivateAndDeleted(t *testing.T) {
	t.Parallel()
	nc := natstest.Connect(t)
	var name string
	t.Run("inner", func(t *testing.T) {
		var prefix string
		name, prefix = natstest.Stream(t, nc, func(c *jetstream.StreamConfig) { c.Storage = jetstream.MemoryStorage })
		if !strings.HasSuffix(prefix, ".") || !strings.Contains(name, "inner") {
			t.Errorf("stream %q prefix %q", name, prefix)
		}
		_, prefix2 := natstest.Stream(t, nc)
		if prefix2 == prefix {
			t.Error("two streams share a prefix")
		}
	})
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.Stream(ctx, name); err == nil {
		t.Errorf("stream %s still exists after its test ended", name)
	}
}
