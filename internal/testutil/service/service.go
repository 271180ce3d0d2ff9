// Package service marks the tests that need a service this machine must run (PostgreSQL,
// MariaDB, the shared NATS JetStream server, Redis, RabbitMQ, Mosquitto): `go test -short`
// skips them, so the quick loop runs every test that needs none and passes on a machine that
// runs none. Without -short such a test fails, never skips, when its service is unreachable:
// integration tests that skip silently hide a broken CI.
//
// The shared helpers call Require (pgtest.Schema, mysqltest.Database, natstest.Connect, the
// sinks' broker helpers, the chaos profiles), so that tests need not.
package service

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

// Require skips the test when -short is set: it needs name, a service that must be running.
func Require(tb testing.TB, name string) {
	tb.Helper()
	if testing.Short() {
		tb.Skipf("needs %s; skipped with -short", name)
	}
}

// SkipExamples makes -short skip the named examples, which need a service (an example cannot
// skip itself: it has no *testing.T). Call it from TestMain before m.Run; it parses the
// command line if that was not done yet, and adds the examples to -test.skip. It tells on
// standard error which examples it skips.
func SkipExamples(names ...string) {
	if !flag.Parsed() {
		flag.Parse()
	}
	if !testing.Short() || len(names) == 0 {
		return
	}
	f := flag.Lookup("test.skip")
	if f == nil {
		return
	}
	pattern := "^(" + strings.Join(names, "|") + ")$"
	if old := f.Value.String(); old != "" {
		pattern = old + "|" + pattern
	}
	if err := f.Value.Set(pattern); err != nil {
		panic(err)
	}
	fmt.Fprintf(os.Stderr, "service: -short skips %s (they need a service)\n", strings.Join(names, ", "))
}
