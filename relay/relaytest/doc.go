// Package relaytest tests the relay engine, and sources and sinks written for it, without a
// database or a broker: what kfake is to franz-go.
//
// Source is an in-memory relay.Source that claims the way the outbox stores do (per-key
// order, held keys, retries with delays and attempts, dead letters, released messages,
// refused outcomes) and can be inspected afterwards: what was published in which order, which
// messages are dead and why, how many attempts each one spent. SetFinishError makes its
// Finish fail, as a database that refuses an outcome does.
//
// Sink is an in-memory sink.Sink whose answers are scripted per topic, key and attempt with
// Rules: retryable, permanent (sink.Permanent) and sink-wide (sink.Unavailable) errors,
// broker-reported duplicates (sink.Duplicate), Retry-After delays (sink.RetryAfter), slow
// calls and calls blocked until the test releases them. It records every call and every
// acknowledged message.
//
// Order and CheckOrder check what was delivered (by the Sink, or by a consumer of a real
// broker) for per-key order, loss and duplicates, reading payloads "key:n" that Messages and
// Payload write. Start runs a relay until the test ends; WaitFor waits for a condition.
//
// A typical test of a relay configuration:
//
//	src := relaytest.NewSource(relaytest.SourceConfig{})
//	sk := relaytest.NewSink()
//	sk.Script(relaytest.Rule{Key: "poison", Err: sink.Permanentf("rejected")})
//	src.Enqueue(relaytest.Messages(10, 0, 5)...)
//	relaytest.Start(t, relay.Config{Source: src, Sink: sk})
//	relaytest.WaitFor(t, 5*time.Second, "the backlog", func() bool { return src.Stats().Pending == 0 })
//	relaytest.CheckOrder(t, src.Published())
//
// A source of your own can be driven by a relay into a Sink and checked with CheckDelivered;
// a sink of your own can be put behind a relay over a Source.
//
// The package imports only the standard library and the outbox, sink and relay packages.
package relaytest
