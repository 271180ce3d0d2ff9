package mqttinbox_test

import (
	"os"
	"testing"

	"github.com/outboxgo/outbox/internal/testutil/service"
)

func TestMain(m *testing.M) {
	service.SkipExamples("Example") // it uses PostgreSQL and Mosquitto
	os.Exit(m.Run())
}
