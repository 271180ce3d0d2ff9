package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/internal/unavail"
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

// ErrAuth is wrapped by the error New returns when a broker refuses the sink's SASL
// credentials (SASL_AUTHENTICATION_FAILED, an unsupported mechanism): a configuration the
// sink cannot work with, reported at start instead of retried. At runtime (credentials
// changed on the brokers after New) the client keeps reconnecting and Publish fails with
// sink.Unavailable errors until the brokers accept them.
var ErrAuth = errors.New("kafka sink: authentication refused")

// isAuthErr reports whether err is a broker refusing the client's SASL authentication.
func isAuthErr(err error) bool {
	return errors.Is(err, kerr.SaslAuthenticationFailed) || errors.Is(err, kerr.UnsupportedSaslMechanism) ||
		errors.Is(err, kerr.IllegalSaslState)
}

// sinkWide reports whether a produce failure is the sink's as a whole rather than the
// message's. Not sink-wide: a record batch the broker rejected for one of its records
// (too large, invalid: see isolate), and other non-retriable broker refusals (a policy
// violation, a compression the topic does not take), which are retried and counted.
// Sink-wide: authentication and authorization refused (SASL, TOPIC_ and
// CLUSTER_AUTHORIZATION_FAILED), an unknown topic (the configuration names a topic that
// does not exist), franz-go's retriable broker errors (NOT_LEADER, REQUEST_TIMED_OUT,
// NOT_ENOUGH_REPLICAS, a broker shutting down...), no acknowledgement within the produce
// timeout or before the caller's context ended, the sink or client closed, and every error
// that is not a broker's answer (refused or reset connections, TLS, dial timeouts).
func sinkWide(err error) bool {
	if _, ok := errors.AsType[*batchRejectedError](err); ok {
		return false
	}
	if isAuthErr(err) || errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed) ||
		errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.UnknownTopicID) {
		return true
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return kerr.IsRetriable(ke)
	}
	return true
}

// markUnavailable wraps every sink-wide result of res with sink.Unavailable.
func markUnavailable(res []error) { unavail.Mark(res, sinkWide) }

// classify turns a produce error into a sink result: permanent for what no retry can fix,
// retryable (plain) for everything an operator or time can fix; Publish then marks the
// sink-wide ones with sink.Unavailable (see sinkWide). suspect reports an error
// that franz-go's producer may not recover from by itself (see checkProducer).
func classify(err error, topic string) (_ error, suspect bool) {
	switch {
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge), errors.Is(err, kerr.InvalidRecord):
		return &batchRejectedError{topic: topic, err: err}, false
	case errors.Is(err, kerr.InvalidTopicException):
		return sink.Permanent(fmt.Errorf("kafka sink: publishing to %q: the broker rejected the topic name: %w", topic, err)), false
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		// Unavailable (see sinkWide): an operator grants the ACL, and no message is at fault.
		return fmt.Errorf("kafka sink: publishing to %q: not authorized to write to the topic (grant the ACL); will retry: %w", topic, err), false
	case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.UnknownTopicID):
		// Unavailable: the topic may be being created, and the message must not be lost
		// nor spend its attempts meanwhile.
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
