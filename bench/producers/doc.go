// Package producers holds Go benchmarks of producer commit throughput: transactions of one
// business INSERT plus one enqueued message, committed by 1, 8 and 32 concurrent producers,
// for a plain INSERT into an outbox table without triggers, this project's default (the
// tables its migrations create at run time, written with outbox.Writer) and Watermill's SQL
// publisher in the same transaction. PostgreSQL (pgx) and MariaDB/MySQL (database/sql).
//
//	cd bench
//	go test ./producers -run '^$' -bench . -benchtime 2s -rounds 3
//
// Every round runs each producers × system pair once, the systems in a rotated order, and the
// benchmark prints a table of medians and ratios at the end. See bench/README.md.
package producers
