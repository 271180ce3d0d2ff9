package main

import (
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/outboxgo/outbox/internal/natstest"
)

// TestRelayRefusedCredentials: a NATS password or token the server refuses makes the relay
// exit 1 at start with an error that says so, instead of logging "relay started" and never
// publishing; the password does not appear in the output.
func TestRelayRefusedCredentials(t *testing.T) {
	t.Parallel()
	userSrv := natstest.StartServer(t, &server.Options{NoLog: true, Username: "relay", Password: "s3cret"})
	tokenSrv := natstest.StartServer(t, &server.Options{NoLog: true, Authorization: "t0ken"})
	for _, tc := range []struct{ name, url string }{
		{"wrong password", strings.Replace(userSrv.URL(), "nats://", "nats://relay:wr0ng-pw@", 1)},
		{"wrong token", strings.Replace(tokenSrv.URL(), "nats://", "nats://wr0ng-token@", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := sqliteEnv(t)
			in.run(t, "migrate", "up").want(t, 0)
			in.env["OUTBOX_SINK_NATS_URL"] = tc.url
			r := in.run(t, "relay").want(t, exitFailure).contains(t, "authentication refused", "authorization violation")
			if strings.Contains(r.stdout+r.stderr, "relay started") {
				t.Errorf("the relay started with refused credentials:\n%s", r.stderr)
			}
			if strings.Contains(r.stdout+r.stderr, "wr0ng") {
				t.Errorf("the output shows the credentials:\n%s", r.stderr)
			}
		})
	}
}
