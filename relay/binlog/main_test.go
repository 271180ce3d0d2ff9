package binlog_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/outboxgo/outbox/internal/testutil/service"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		// A relay process of TestKill9: see crash_test.go.
		os.Exit(childMain())
	}
	service.SkipExamples("Example") // it needs MariaDB
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
