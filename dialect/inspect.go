package dialect

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Inspector is implemented by stores that can break the outbox down by topic and list the
// relays of its membership table: what the admin API's topics and relays answer.
type Inspector interface {
	// Topics lists every topic with unpublished messages or dead letters, most pending
	// first, then by name, at most limit (> 0).
	Topics(ctx context.Context, limit int) ([]TopicStats, error)
	// Relays lists the relays of the membership table, by group, in the order a Heartbeat
	// reads a group's ids (MembershipOf), with how long ago each one last heartbeat. Relays
	// silent for longer than their TTL are listed until a Heartbeat forgets them.
	Relays(ctx context.Context) ([]RelayInfo, error)
}

// DeadLetterIDLister is implemented by stores that can list the ids of dead letters alone,
// without their payloads: what a retry or a purge of every dead letter (outbox dlq retry
// --all) needs to batch them, in memory bounded by the ids.
type DeadLetterIDLister interface {
	// DeadLetterIDs lists the ids of the dead letters after afterID, in id order, at most
	// limit (> 0): the ids Admin.DeadLetters would list.
	DeadLetterIDs(ctx context.Context, afterID int64, limit int) ([]int64, error)
}

// TopicStats summarises the messages of one topic.
type TopicStats struct {
	Topic         string
	Pending       int64         // unpublished messages
	Ready         int64         // of which available now (not in backoff)
	Retrying      int64         // of which attempted at least once
	OldestPending time.Duration // age of the oldest unpublished message (0 when none)
	DeadLetters   int64
	LastError     string // the error of the unpublished message that failed last ("" when none)
}

// RelayInfo is one row of the relays' membership table.
type RelayInfo struct {
	ID           string
	Group        string // relays restricted to the same topics share a group ("" for all topics)
	HeartbeatAge time.Duration
}

// ReplayFilter selects the published messages an outbox in retention mode still keeps (rows
// with published_at set, see ClaimRequest.Retain) for Replayer.
type ReplayFilter struct {
	// From and To bound published_at: From <= published_at < To. Required, From before To.
	From, To time.Time
	// Topics and Keys, when not empty, restrict the selection to these exact topics and
	// keys (messages without a key match no key).
	Topics, Keys []string
	// MaxSeq, when positive, leaves out rows with a greater sequence number. A replay sets
	// it to the greatest sequence number at its start (Replay does), so that the rows it
	// moved, and those published again meanwhile, are not taken twice.
	MaxSeq int64
}

// Validate reports a filter Replayer methods refuse.
func (f ReplayFilter) Validate() error {
	if f.From.IsZero() || f.To.IsZero() {
		return errors.New("replay: from and to are required")
	}
	if !f.From.Before(f.To) {
		return fmt.Errorf("replay: from (%s) must be before to (%s)", f.From.UTC().Format(time.RFC3339Nano), f.To.UTC().Format(time.RFC3339Nano))
	}
	for _, s := range append(append([]string(nil), f.Topics...), f.Keys...) {
		if s == "" {
			return errors.New("replay: topics and keys must not be empty strings")
		}
	}
	return nil
}

// Replayer is implemented by stores that can publish retained messages again: each selected
// row is deleted and inserted again as a new row at the end of the queue, with its message id,
// topic, key, type, payload, headers and created_at, and its attempts reset. Sources that read
// inserts from the database's log (relay/wal, relay/binlog) see the new rows as they see any
// insert. Rows move in sequence order, so the messages of one key keep their order among
// themselves; they come after the key's messages already waiting.
type Replayer interface {
	// LastSeq returns the greatest sequence number of the outbox (0 when it is empty).
	LastSeq(ctx context.Context) (int64, error)
	// CountPublished counts the retained published messages f selects.
	CountPublished(ctx context.Context, f ReplayFilter) (int64, error)
	// ReplayPublished moves at most limit (> 0) of the messages f selects, lowest sequence
	// number first, in one transaction, and returns how many it moved: 0 when none is left.
	ReplayPublished(ctx context.Context, f ReplayFilter, limit int) (int64, error)
}

// DefaultReplayBatch is how many messages Replay moves per transaction by default.
const DefaultReplayBatch = 10000

// Replay moves every retained published message f selects to the end of the queue, batch
// (default DefaultReplayBatch) per transaction, and returns how many it moved. It bounds f by
// the outbox's last sequence number first (ReplayFilter.MaxSeq), so it ends even when the
// relay publishes the moved messages again, within the window, while it runs. progress, when
// set, is called after each batch with the count so far. On an error the batches committed
// before it stay moved: the count says how many.
func Replay(ctx context.Context, r Replayer, f ReplayFilter, batch int, progress func(done int64)) (int64, error) {
	if err := f.Validate(); err != nil {
		return 0, err
	}
	if batch <= 0 {
		batch = DefaultReplayBatch
	}
	last, err := r.LastSeq(ctx)
	if err != nil {
		return 0, err
	}
	if last == 0 {
		return 0, nil
	}
	if f.MaxSeq <= 0 || f.MaxSeq > last {
		f.MaxSeq = last
	}
	var done int64
	for {
		n, err := r.ReplayPublished(ctx, f, batch)
		done += n
		if err != nil {
			return done, err
		}
		if n > 0 && progress != nil {
			progress(done)
		}
		if n < int64(batch) {
			return done, nil // the selection is exhausted
		}
	}
}

// ScanTopicStats reads the rows of a per-topic query for Inspector.Topics: topic, pending,
// ready, retrying, the age of the oldest unpublished message in microseconds (NULL when
// none) and dead letters. It takes QueryContext's results as they are; LastError is left to
// the caller.
func ScanTopicStats(rows *sql.Rows, err error) ([]TopicStats, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TopicStats
	for rows.Next() {
		var (
			t      TopicStats
			oldest sql.NullInt64
		)
		if err := rows.Scan(&t.Topic, &t.Pending, &t.Ready, &t.Retrying, &oldest, &t.DeadLetters); err != nil {
			return nil, err
		}
		t.OldestPending = max(time.Duration(oldest.Int64)*time.Microsecond, 0)
		out = append(out, t)
	}
	return out, rows.Err()
}

// PendingTopics returns the topics of ts with unpublished messages: those whose last error
// a store reads next.
func PendingTopics(ts []TopicStats) []string {
	var out []string
	for _, t := range ts {
		if t.Pending > 0 {
			out = append(out, t.Topic)
		}
	}
	return out
}

// ScanLastErrors reads rows of (topic, last error) into a map by topic.
func ScanLastErrors(rows *sql.Rows, err error) (map[string]string, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	errs := map[string]string{}
	for rows.Next() {
		var topic, msg string
		if err := rows.Scan(&topic, &msg); err != nil {
			return nil, err
		}
		errs[topic] = msg
	}
	return errs, rows.Err()
}
