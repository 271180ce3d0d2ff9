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
// Shutdown: when Run's context ends, workers stop claiming, in-flight batches finish within
// Config.ShutdownTimeout, and anything not yet acknowledged is released unchanged.
package relay
