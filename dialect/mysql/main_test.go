package mysql_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/outboxgo/outbox/internal/testutil/service"
)

func TestMain(m *testing.M) {
	service.SkipExamples("Example") // it needs MariaDB
	goleak.VerifyTestMain(m)
}
