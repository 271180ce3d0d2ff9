package kafka

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/outboxgo/outbox"
)

// TestBrokerAddressNotEchoed: a broker address carrying credentials or a scheme is refused
// before anything dials it, and the error does not quote it.
func TestBrokerAddressNotEchoed(t *testing.T) {
	t.Parallel()
	for _, b := range []string{"u:hunter2@k:9092", "kafka://u:hunter2@k:9092", "k:9092/hunter2"} {
		_, err := New(context.Background(), Config{Brokers: []string{"k1:9092", b}})
		var ce *outbox.ConfigError
		if !errors.As(err, &ce) || ce.Field != "brokers" || !strings.Contains(ce.Reason, "broker 2") {
			t.Fatalf("New(%q) = %v, want a brokers ConfigError", b, err)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("New(%q): %v quotes the secret", b, err)
		}
	}
}
