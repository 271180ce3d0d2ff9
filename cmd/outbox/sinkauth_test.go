package main

import (
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/outboxgo/outbox/internal/testutil/natstest"
	"github.com/outboxgo/outbox/internal/testutil/service"
)

// TestRelayRefusedCredentials: a NATS password or token, a Redis or RabbitMQ password the
// broker refuses makes the relay exit 1 at start with an error that says so, instead of
// logging "relay started" and never publishing; the password does not appear in the output.
func TestRelayRefusedCredentials(t *testing.T) {
	t.Parallel()
	userSrv := natstest.StartServer(t, &server.Options{NoLog: true, Username: "relay", Password: "s3cret"})
	tokenSrv := natstest.StartServer(t, &server.Options{NoLog: true, Authorization: "t0ken"})
	for _, tc := range []struct {
		name  string
		env   map[string]string
		says  string
		needs string // the shared service the case needs, if any
	}{
		{"nats wrong password", map[string]string{"OUTBOX_SINK_NATS_URL": strings.Replace(userSrv.URL(), "nats://", "nats://relay:wr0ng-pw@", 1)}, "authorization violation", ""},
		{"nats wrong token", map[string]string{"OUTBOX_SINK_NATS_URL": strings.Replace(tokenSrv.URL(), "nats://", "nats://wr0ng-token@", 1)}, "authorization violation", ""},
		{"redis wrong password", map[string]string{"OUTBOX_SINK_TYPE": "redis", "OUTBOX_SINK_REDIS_USERNAME": "outbox-test-nobody",
			"OUTBOX_SINK_REDIS_PASSWORD": "wr0ng-pw"}, "WRONGPASS", "Redis"},
		{"amqp wrong password", map[string]string{"OUTBOX_SINK_TYPE": "amqp", "OUTBOX_SINK_AMQP_URL": "amqp://guest:wr0ng-pw@127.0.0.1:5672/"}, "username or password not allowed", "RabbitMQ"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needs != "" {
				service.Require(t, tc.needs)
			}
			in := sqliteEnv(t)
			in.run(t, "migrate", "up").want(t, 0)
			for k, v := range tc.env {
				in.env[k] = v
			}
			r := in.run(t, "relay").want(t, exitFailure).contains(t, "authentication refused", tc.says)
			if strings.Contains(r.stdout+r.stderr, "relay started") {
				t.Errorf("the relay started with refused credentials:\n%s", r.stderr)
			}
			if strings.Contains(r.stdout+r.stderr, "wr0ng") {
				t.Errorf("the output shows the credentials:\n%s", r.stderr)
			}
		})
	}
}
