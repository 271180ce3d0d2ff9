// Package redislisten is a listen.Cache on Redis, shared by the replicas of a service: with
// it, a read on any replica sees a write made on any other at once, before the service's
// self-consumer applied the write's event (see package listen for the pattern).
//
// Put is an atomic compare-and-set on the version (one Lua script, redis.NewScript): it
// never replaces a state of the key whose version is greater or equal, whatever the order
// in which replicas, late self-consumer applies and fallback reads arrive. Entries expire
// TTL after their last Put (PEXPIRE); Prefix keeps one service's keys apart on a shared
// server.
//
// With listen.Service.WriteLocked, the shared cache also serializes the writes of a key:
// the writer holding the key's lock fills the cache before releasing it, and the next
// writer decides on that state.
//
// Limits: a state lost from Redis before its event is applied (TTL shorter than the
// consumer's lag, eviction under maxmemory, a server restart without persistence, a
// failover that lost the last writes) is served from the service's table, which lags: the
// read does not see the write, and a write can then decide on an older version. Use a
// noeviction or volatile policy sized for the keys, and a TTL well above the lag. If Redis
// is unreachable, reads fall back to the table and writes fail (listen.Service.Write).
package redislisten
