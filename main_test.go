package outbox_test

import (
	"os"
	"testing"

	"github.com/outboxgo/outbox/internal/testutil/service"
)

func TestMain(m *testing.M) {
	service.SkipExamples("ExampleWriter_Enqueue") // it writes to PostgreSQL
	os.Exit(m.Run())
}
