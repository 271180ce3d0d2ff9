// Package relay is the engine that moves committed outbox messages from a Source to a Sink.
//
// Workers each take a batch from the source (which holds the batch's rows until it is
// finished), publish it, and finish it: acknowledged messages are deleted (or marked),
// failed ones get a persisted retry time with exponential backoff and full jitter, and
// messages that fail permanently or run out of attempts move to the dead-letter table.
//
// Per-key order: within a batch, messages are published in waves carrying at most one message
// per key, and a key's next message is sent only after the broker acknowledged the previous
// one. A failure stops its key for the rest of the batch, so later messages of that key wait
// behind it; other keys go on. Across batches and relays, the source guarantees that a batch
// never holds a later message of a key while an earlier one is unfinished elsewhere.
//
// Sink-wide failures: a result wrapping sink.ErrUnavailable (broker down, refused,
// authentication, missing stream), or a publish that ran into Config.PublishTimeout, is not the
// message's fault. It spends no attempt: the destination (the sink, or with package route the
// route's sink) pauses, and is probed after 1s, the wait doubling up to
// Config.MaxProbeInterval, jittered. Meanwhile its messages wait with their attempts unchanged:
// with one sink they are released unchanged and the workers wait for the probe; with routes
// they are rescheduled for the probe (outbox.Retry.NotAttempted) so the other destinations
// flow.
//
// Operator pauses: with Config.Pauses (a dialect.Pauser, read every Config.PauseInterval), the
// messages of a topic or a sink an operator paused are held until it resumes, without attempts,
// probes or backoff, while the rest flows; per-key order holds. They are no outage: Paused does
// not list them, OperatorPauses does.
//
// Bookkeeping failures: when Finish fails (the database refused the outcome, its session was
// cut), the relay backs off (jittered, 100ms doubling to 30s) and remembers the outcome; when
// the messages are claimed again it applies that outcome instead of publishing them again. So
// however the bookkeeping fails, a running relay publishes a message once per attempt.
//
// Visibility: retryable failures are logged at WARN when they start (per destination and
// topic, and when the error changes), summarised every Config.FailureSummaryInterval while
// they last, and logged at INFO when they clear; pauses likewise. Broker-reported duplicates
// (sink.ErrDuplicate) count as delivered and are logged at WARN with the ids.
//
// Retry-After: a retryable error that implements sink.RetryAfter (the webhook sink's for a 429
// or 503 with a Retry-After header) schedules the retry no sooner than the broker asked,
// within Config.BackoffMax.
//
// Hooks: Config.Hooks take values implementing one or more of the hook interfaces
// (HookBatchFinished: every finished batch with its outcome), in the style of franz-go's
// kgo.Hook, so that metrics and tracing can be added as new interfaces without breaking the
// hooks that exist.
//
// Testing: package relay/relaytest has an in-memory Source and a scriptable Sink, to test
// the engine, or a source or sink of your own against it, without a database or a broker.
//
// Shutdown: when Run's context ends, workers stop claiming, in-flight batches finish within
// Config.ShutdownTimeout, and anything not yet acknowledged is released unchanged.
package relay
