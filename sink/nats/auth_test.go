package nats_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/natstest"
	"github.com/outboxgo/outbox/sink"
	natssink "github.com/outboxgo/outbox/sink/nats"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// withUser requires user/password authentication.
func withUser(user, password string) func(*server.Options) {
	return func(o *server.Options) { o.Username, o.Password, o.Authorization = user, password, "" }
}

// withToken requires token authentication.
func withToken(token string) func(*server.Options) {
	return func(o *server.Options) { o.Username, o.Password, o.Authorization = "", "", token }
}

// authURL puts credentials into a server's client URL: "user:password" or "token".
func authURL(srv *natstest.Server, userinfo string) string {
	return strings.Replace(srv.URL(), "nats://", "nats://"+userinfo+"@", 1)
}

// TestAuthAtStart: credentials the server refuses make New fail at once with ErrAuth (the
// command exits 1 with it), for a wrong password, a missing one and a wrong token, and the
// error names the server without the credentials.
func TestAuthAtStart(t *testing.T) {
	t.Parallel()
	userSrv := natstest.StartServer(t, &server.Options{NoLog: true, Username: "relay", Password: "s3cret"})
	tokenSrv := natstest.StartServer(t, &server.Options{NoLog: true, Authorization: "t0ken"})
	for _, tc := range []struct{ name, url string }{
		{"wrong password", authURL(userSrv, "relay:wrong")},
		{"no credentials", userSrv.URL()},
		{"wrong token", authURL(tokenSrv, "nope")},
		{"no token", tokenSrv.URL()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			s, err := natssink.New(ctx, quietConfig(t, natssink.Config{URL: tc.url, ReconnectWait: 50 * time.Millisecond}))
			if err == nil {
				_ = s.Close()
				t.Fatal("New succeeded with refused credentials")
			}
			if !errors.Is(err, natssink.ErrAuth) || !errors.Is(err, natsgo.ErrAuthorization) {
				t.Errorf("New: %v, want ErrAuth wrapping nats.ErrAuthorization", err)
			}
			if strings.Contains(err.Error(), "wrong") || strings.Contains(err.Error(), "nope") {
				t.Errorf("error %q shows the credentials", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("New took %s to report refused credentials", d)
			}
		})
	}
	// Right credentials work.
	for _, url := range []string{authURL(userSrv, "relay:s3cret"), authURL(tokenSrv, "t0ken")} {
		s := newSink(t, natssink.Config{URL: url})
		if !s.Conn().IsConnected() {
			t.Errorf("%s: not connected", url)
		}
	}
}

// TestAuthAtRuntime: the server starts refusing the sink's credentials after New (restarted
// with another password, then with a token). Publish fails with Unavailable errors, the
// refusal is logged, the connection is not given up (nats.go closes it for good after the
// same auth error twice unless told otherwise), and once the server accepts the credentials
// again the sink publishes by itself.
func TestAuthAtRuntime(t *testing.T) {
	t.Parallel()
	srv := natstest.StartServer(t, &server.Options{NoLog: true, Username: "relay", Password: "s3cret"})
	nc := natstest.ConnectURL(t, authURL(srv, "relay:s3cret"))
	_, prefix := natstest.Stream(t, nc) // file storage: survives the restarts
	nc.Close()

	logs := &logtest.Buffer{}
	s := newSink(t, natssink.Config{
		URL: authURL(srv, "relay:s3cret"), SubjectPrefix: prefix, PublishTimeout: time.Second,
		ReconnectWait: 50 * time.Millisecond, Logger: logs.Logger(),
	})
	rec := sinktest.NewRecord("orders", "k", []byte("{}"))
	if err := publish(t, s, rec)[0]; err != nil {
		t.Fatalf("before: %v", err)
	}

	for _, edit := range []func(*server.Options){withUser("relay", "rotated"), withToken("t0ken")} {
		srv.RestartWith(edit)
		// Many reconnect attempts, all refused.
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(logs.String(), "authorization violation") {
			if time.Now().After(deadline) {
				t.Fatalf("the refused credentials were not logged; logs:\n%s", logs)
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(500 * time.Millisecond)
		if st := s.Conn().Status(); st == natsgo.CLOSED {
			t.Fatal("the sink's connection closed for good after refused credentials")
		}
		err := publish(t, s, sinktest.NewRecord("orders", "k", []byte("{}")))[0]
		if !sink.IsUnavailable(err) {
			t.Fatalf("publish while the credentials are refused: %v, want an Unavailable error", err)
		}
	}

	srv.RestartWith(withUser("relay", "s3cret"))
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := publish(t, s, sinktest.NewRecord("orders", "k", []byte("{}")))[0]
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing 20s after the server accepts the credentials again: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDuplicateReported: JetStream answers a second publish of the same id, with another
// payload, as a duplicate; the sink reports it with sink.Duplicate naming the stream, and
// the stream keeps the first payload only.
func TestDuplicateReported(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := sinktest.NewRecord("orders", "k", []byte(`{"v":1}`))
	second := *first
	second.Payload = []byte(`{"v":2}`)
	if err := publish(t, b.sink, first)[0]; err != nil {
		t.Fatalf("first publish: %v", err)
	}
	err := publish(t, b.sink, &second)[0]
	if !sink.IsDuplicate(err) {
		t.Fatalf("second publish of the same id: %v, want a duplicate result", err)
	}
	if sink.IsPermanent(err) || sink.IsUnavailable(err) {
		t.Errorf("duplicate result %v is also marked permanent or unavailable", err)
	}
	if !strings.Contains(err.Error(), b.stream) {
		t.Errorf("duplicate result %q does not name the stream", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := b.js.Stream(ctx, b.stream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != `{"v":1}` {
		t.Errorf("stream holds %s, want the first payload", m.Data)
	}
	if _, err := st.GetMsg(ctx, 2); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("a second message is in the stream: %v", err)
	}
}

// TestClosedForGoodIsLogged: a server error nats.go does not retry (here a control line over
// the server's max_control_line) closes the connection for good; the sink says so at ERROR,
// and its publishes fail as Unavailable instead of being counted against the messages.
func TestClosedForGoodIsLogged(t *testing.T) {
	t.Parallel()
	srv := natstest.StartServer(t, &server.Options{NoLog: true, MaxControlLine: 512})
	logs := &logtest.Buffer{}
	s := newSink(t, natssink.Config{URL: srv.URL(), PublishTimeout: time.Second, Logger: logs.Logger()})
	long := strings.Repeat("x", 600)
	_ = publish(t, s, sinktest.NewRecord(long, "k", nil))
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "closed for good") {
		if time.Now().After(deadline) {
			t.Fatalf("the final close was not logged; logs:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("not logged at ERROR:\n%s", logs)
	}
	if err := publish(t, s, sinktest.NewRecord("orders", "k", nil))[0]; !sink.IsUnavailable(err) {
		t.Errorf("publish on a closed connection: %v, want Unavailable", err)
	}
}
