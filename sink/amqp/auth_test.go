package amqp_test

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/sink"
	amqpsink "github.com/outboxgo/outbox/sink/amqp"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// rabbitmqctl runs the broker's rabbitmqctl ($OUTBOX_TEST_RABBITMQCTL, e.g. "docker exec
// rabbitmq rabbitmqctl", default "rabbitmqctl"). It fails the test, never skips it, when
// the command fails.
func rabbitmqctl(t *testing.T, args ...string) {
	t.Helper()
	cmd := strings.Fields(os.Getenv("OUTBOX_TEST_RABBITMQCTL"))
	if len(cmd) == 0 {
		cmd = []string{"rabbitmqctl"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, cmd[0], append(append(cmd[1:], "-q"), args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %s (set OUTBOX_TEST_RABBITMQCTL to reach the broker's): %v: %s", strings.Join(args, " "), err, out)
	}
}

// TestAuthAtRuntime: the sink's user gets another password after New and its connection is
// closed by the broker. The sink keeps redialing, logs the refusal at ERROR, and Publish
// fails with Unavailable errors; once the password is restored it reconnects and publishes.
func TestAuthAtRuntime(t *testing.T) {
	t.Parallel()
	tp := newTopology(t, nil)
	user := uniqueName("user")
	rabbitmqctl(t, "add_user", user, "right")
	t.Cleanup(func() { rabbitmqctl(t, "delete_user", user) })
	rabbitmqctl(t, "set_permissions", "-p", "/", user, ".*", ".*", ".*")

	u, err := url.Parse(brokerURL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, "right")
	logs := &logtest.Buffer{}
	s := newSink(t, amqpsink.Config{
		URL: u.String(), Exchange: tp.exchange, ReconnectWait: 50 * time.Millisecond,
		Logger: logs.Logger(),
	})
	if err := publish(t, s, sinktest.NewRecord("orders", "k", nil))[0]; err != nil {
		t.Fatalf("before: %v", err)
	}

	rabbitmqctl(t, "change_password", user, "rotated")
	rabbitmqctl(t, "close_all_user_connections", user, "credentials rotated")
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "refuses the credentials") {
		if time.Now().After(deadline) {
			t.Fatalf("the refused credentials were not logged; logs:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := publish(t, s, sinktest.NewRecord("orders", "k", nil))[0]; !sink.IsUnavailable(err) {
		t.Fatalf("publish while the credentials are refused: %v, want Unavailable", err)
	}

	rabbitmqctl(t, "change_password", user, "right")
	waitPublished(t, s, sinktest.NewRecord("orders", "k", nil))
}
