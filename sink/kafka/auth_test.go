package kafka_test

import (
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/sink"
	kafkasink "github.com/outboxgo/outbox/sink/kafka"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// saslCluster is a kfake cluster with SASL PLAIN that, while refuse is set, answers every
// SaslAuthenticate the way a real broker answers wrong credentials: error code 58
// (kfake itself only closes the connection), and, while kick is set, closes every
// connection a Produce request arrives on, so that clients reconnect and authenticate
// again.
func saslCluster(t *testing.T, user, pass string) (c *kfake.Cluster, refuse, kick *atomic.Bool) {
	t.Helper()
	c = newCluster(t, kfake.EnableSASL(), kfake.Superuser(kafkasink.SASLPlain, user, pass))
	refuse, kick = new(atomic.Bool), new(atomic.Bool)
	c.ControlKey(int16(kmsg.SASLAuthenticate), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !refuse.Load() {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		msg := "Authentication failed: Invalid username or password"
		resp.ErrorMessage = &msg
		return resp, nil, true
	})
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !kick.Load() {
			return nil, nil, false
		}
		return nil, errors.New("connection closed by the test"), true
	})
	return c, refuse, kick
}

// TestAuthAtStart: credentials the brokers refuse make New fail with ErrAuth (the command
// exits 1 with it), without the password in the error.
func TestAuthAtStart(t *testing.T) {
	t.Parallel()
	const user, pass = "relay", "relay-secret-pw"
	c, refuse, _ := saslCluster(t, user, pass)
	refuse.Store(true)
	start := time.Now()
	s, err := kafkasink.New(t.Context(), kafkasink.Config{
		Brokers: c.ListenAddrs(), SASLMechanism: kafkasink.SASLPlain, SASLUser: user, SASLPassword: pass,
		Logger: logtest.NewLevel(t, slog.LevelInfo),
	})
	if err == nil {
		_ = s.Close()
		t.Fatal("New succeeded with refused credentials")
	}
	if !errors.Is(err, kafkasink.ErrAuth) || !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Errorf("New: %v, want ErrAuth wrapping SASL_AUTHENTICATION_FAILED", err)
	}
	if strings.Contains(err.Error(), pass) {
		t.Errorf("error contains the password: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("New took %s", d)
	}
}

// TestAuthAtRuntime: the brokers start refusing the credentials after New (and drop the
// connections). Publish fails with Unavailable errors, the refusal is logged at ERROR, and
// once the brokers accept the credentials again the sink publishes by itself.
func TestAuthAtRuntime(t *testing.T) {
	t.Parallel()
	const user, pass = "relay", "relay-secret-pw"
	c, refuse, kick := saslCluster(t, user, pass)
	topic := uniqueName("auth")
	createTopic(t, c, topic, 1, nil, kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism()))
	logs := &logtest.Buffer{}
	s := newSink(t, kafkasink.Config{
		Brokers: c.ListenAddrs(), SASLMechanism: kafkasink.SASLPlain, SASLUser: user, SASLPassword: pass,
		ProduceTimeout: time.Second,
		Logger:         logs.Logger(),
	})
	if err := publish(t, s, sinktest.NewRecord(topic, "k", nil))[0]; err != nil {
		t.Fatalf("before: %v", err)
	}

	refuse.Store(true)
	kick.Store(true)
	err := publish(t, s, sinktest.NewRecord(topic, "k", nil))[0]
	if !sink.IsUnavailable(err) {
		t.Fatalf("publish while the credentials are refused: %v, want Unavailable", err)
	}
	t.Logf("refused: %v", err)
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "refuses the SASL credentials") {
		t.Errorf("the refusal was not logged at ERROR; logs:\n%s", logs)
	}

	refuse.Store(false)
	kick.Store(false)
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := publish(t, s, sinktest.NewRecord(topic, "k", nil))[0]
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing 20s after the brokers accept the credentials again: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBrokersDown: with every broker gone, Publish fails with Unavailable errors within
// the produce timeout (an outage spends no attempt); New with the brokers down still
// returns a sink.
func TestBrokersDown(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	topic := uniqueName("down")
	createTopic(t, c, topic, 3, nil)
	const timeout = time.Second
	s := newSink(t, kafkasink.Config{Brokers: c.ListenAddrs(), ProduceTimeout: timeout})
	requireOK(t, publish(t, s, keyedBatch(topic, "k", 5, 5)...))
	addrs := c.ListenAddrs()
	c.Close()
	start := time.Now()
	for i, err := range publish(t, s, keyedBatch(topic, "k", 5, 5)...) {
		if !sink.IsUnavailable(err) {
			t.Errorf("message %d with the brokers down: %v, want Unavailable", i, err)
		}
	}
	if d := time.Since(start); d > timeout+2*time.Second {
		t.Errorf("Publish took %s with a produce timeout of %s", d, timeout)
	}
	down := newSink(t, kafkasink.Config{Brokers: addrs, ProduceTimeout: timeout})
	if err := publish(t, down, sinktest.NewRecord(topic, "k", nil))[0]; !sink.IsUnavailable(err) {
		t.Errorf("publish from a sink made while the brokers are down: %v, want Unavailable", err)
	}
}
