// Package metrics exposes an outbox relay's and consumer's work as Prometheus metrics
// (prometheus/client_golang): collectors to register with a prometheus.Registerer.
//
//   - Relay: a relay hook (relay.Config.Hooks) counting published, retried, unavailable,
//     dead-lettered and broker-duplicate messages per sink, with histograms of the
//     commit-to-acknowledgement latency and of each publish call, and the sinks paused after
//     sink-wide failures (Watch the relay).
//   - Table: the outbox table's backlog, oldest unpublished age, dead letters and live
//     relays, read by one query at an interval (Run), never per scrape.
//   - Source: the source's state, from a function read at each scrape (PollStats for
//     relay/poll; the outbox command wires relay/wal and relay/binlog).
//   - Inbox: an inbox hook (inbox.Config.Hooks) counting deliveries by outcome, with the
//     event-to-effect latency.
//
// Labels are bounded: sink, table, source, consumer, outcome; topic only when asked
// (RelayOptions.TopicLabel). docs/operations.md lists every metric.
package metrics
