package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxgo/outbox/sink"
)

// batchRejectedError is a broker's rejection of a whole record batch for what may be the
// fault of only one of its records (one too large for the topic, one invalid for it).
// Publish sends each such record again alone to find out (see isolate); callers see it
// only when that was not possible, as a retryable error.
type batchRejectedError struct {
	topic string
	err   error
}

func (e *batchRejectedError) Error() string {
	return fmt.Sprintf("kafka sink: publishing to %q: the broker rejected the record batch: %v", e.topic, e.err)
}

func (e *batchRejectedError) Unwrap() error { return e.err }

// classify turns a produce error into a sink result: permanent for what no retry can fix,
// retryable (plain) for everything an operator or time can fix. suspect reports an error
// that franz-go's producer may not recover from by itself (see checkProducer).
func classify(err error, topic string) (_ error, suspect bool) {
	switch {
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge), errors.Is(err, kerr.InvalidRecord):
		return &batchRejectedError{topic: topic, err: err}, false
	case errors.Is(err, kerr.InvalidTopicException):
		return sink.Permanent(fmt.Errorf("kafka sink: publishing to %q: the broker rejected the topic name: %w", topic, err)), false
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		return sink.Permanent(fmt.Errorf("kafka sink: publishing to %q: not authorized to write to the topic: %w", topic, err)), false
	case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.UnknownTopicID):
		// Retryable: the topic may be being created, and the message must not be lost.
		return fmt.Errorf("kafka sink: publishing to %q: the topic does not exist "+
			"(create it, or enable automatic topic creation on the brokers); will retry: %w", topic, err), false
	case errors.Is(err, kgo.ErrRecordTimeout):
		return fmt.Errorf("kafka sink: publishing to %q: not acknowledged within the produce timeout: %w", topic, err), false
	case isContextErr(err):
		return fmt.Errorf("kafka sink: publishing to %q: %w", topic, err), false
	}
	var ke *kerr.Error
	if errors.As(err, &ke) && !kerr.IsRetriable(ke) {
		// Other broker refusals (authorization of the idempotent producer, policy,
		// compression the topic does not take) are configuration to fix, not the
		// message's fault: retry, and check the producer survived it.
		return fmt.Errorf("kafka sink: publishing to %q: %w", topic, err), true
	}
	// Retriable broker errors (not leader, timeouts, not enough replicas), network
	// errors, a closed client.
	return fmt.Errorf("kafka sink: publishing to %q: %w", topic, err), false
}

// checkProducer returns an error when cl's idempotent producer failed for good. franz-go
// recovers from failed batches by bumping its producer epoch, but a non-retriable error
// from InitProducerID (the idempotent-write authorization missing at the time, say) stays
// with the client, and every later record would fail with it.
func (s *Sink) checkProducer(ctx context.Context, cl *kgo.Client) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(s.timeout, 5*time.Second))
	defer cancel()
	_, _, err := cl.ProducerID(ctx)
	var ke *kerr.Error
	if errors.As(err, &ke) && !kerr.IsRetriable(ke) {
		return fmt.Errorf("initializing the idempotent producer: %w", err)
	}
	return nil
}
