// Package admin is the relay's admin HTTP server as an http.Handler: /healthz (alive),
// /readyz (database, source, sinks, lag), /metrics (a prometheus.Gatherer) and the JSON API
// under /api/v1 (status; dead letters listed with filters and a cursor, grouped by normalised
// error, retried and purged by ids, filter or all, with dry runs; topics, live relays with
// their partitions, consumers' inboxes; replay of retained published messages; operator
// pauses of a topic or a sink, listed, added and removed). Mutating endpoints require
// the admin bearer token, reads the read token when one is set; tokens are compared in
// constant time and never logged, and each mutation logs an audit line.
//
// `outbox relay --admin-addr` serves it; an embedded relay mounts Server on a mux of its own.
// docs/operations.md documents the endpoints.
package admin
