// Package cleanup holds Go benchmarks of removing published rows from a PostgreSQL outbox at
// volume, the figures behind docs/operations.md's "Cleanup at 100 M rows a day":
//
//   - finish: what the relay does by default (retention 0): it deletes each batch's rows by id
//     when it records the batch (DELETE … WHERE id = ANY($1), 1,000 ids a statement);
//   - retention: retention mode's background cleanup, the store's DeletePublished in batches of
//     5,000 rows until none has expired, then the VACUUM that makes the space reusable;
//   - partitions: the alternative, a table partitioned by created_at whose expired partition
//     is detached (CONCURRENTLY) and dropped.
//
// Each reports rows/s, the WAL it wrote per row and the table's size afterwards.
//
//	cd bench
//	go test ./cleanup -run '^$' -bench . -benchtime 1x -rows 1000000
package cleanup
