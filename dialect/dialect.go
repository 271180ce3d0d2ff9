// Package dialect defines what the relay and the outbox command need from a database holding an
// outbox table, and the types they exchange.
//
// The contract is split by who needs it, as small interfaces:
//
//   - Claimer, the relay's hot path: claim, finish, heartbeat, leave, delete published rows
//     (relay/poll depends on nothing else). Notifier and Exhaustive are optional extras.
//   - Admin, the operators' surface: stats, dead letters, enqueueing for scripts (the outbox
//     command's status, dlq and enqueue commands).
//   - Migrator, the schema: migrate up, down, status (the outbox command's migrate command).
//   - HeldWriter, the log sources' writes: relay/wal and relay/binlog read messages from the
//     database's log and hold them in memory, and write only their outcomes (deletes, dead
//     letters, broker duplicates) through it.
//
// Store is the union of the first three plus Close, for callers that want everything. Each
// subpackage (postgres, mysql, sqlite) implements Store for one database and passes the shared
// conformance suite in dialecttest; postgres and mysql also implement HeldWriter.
package dialect

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/outboxgo/outbox"
)

// ErrNoMigrations is returned by MigrateDown when nothing is applied.
var ErrNoMigrations = errors.New("dialect: no migration applied")

// Store is one outbox table (with its dead-letter, relay-membership and migration tables) in
// one database: every surface of it. Callers that need only one surface take that one: the
// polling source a Claimer, the outbox command's status and dlq commands an Admin, its
// migrate command a Migrator.
type Store interface {
	Claimer
	Admin
	Migrator

	// Close releases the store's connections (not the caller's pool, when one was given).
	Close() error
}

// Claimer is the relay's hot path: what the polling source (relay/poll) needs to claim
// batches, finish them and share the key space with the other relays. A Claimer may also
// implement Notifier; its claims may implement Exhaustive.
type Claimer interface {
	// Dialect reports which SQL dialect this store speaks.
	Dialect() outbox.Dialect

	// Claim takes up to req.Limit messages that are ready to publish, in id order, and holds them
	// until the returned Claim is finished. Two claims never hold the same message. Claim keeps
	// per-key order: a message is returned only if every earlier unpublished message of its key
	// is also in the claim, so a message of a key whose earlier message is in backoff, or held by
	// another claim, is left for later. It returns an empty claim when nothing is ready.
	Claim(ctx context.Context, req ClaimRequest) (Claim, error)

	// Heartbeat records that relay relayID of group is alive, forgets relays silent for
	// longer than ttl, and returns relayID's position among the live relays of its group.
	// Relays share the key space only with their group: relays restricted to the same topics.
	Heartbeat(ctx context.Context, relayID, group string, ttl time.Duration) (Membership, error)
	// Leave removes relayID from the live relays.
	Leave(ctx context.Context, relayID string) error

	// DeletePublished removes rows published (in retention mode) more than `retention` ago,
	// at most limit rows, and returns how many it removed.
	DeletePublished(ctx context.Context, retention time.Duration, limit int) (int64, error)
}

// Admin is the operators' surface: what the outbox command's status, dlq and enqueue commands
// (and scripts) need to inspect the outbox, repair its dead letters and add messages outside a
// business transaction.
type Admin interface {
	// Dialect reports which SQL dialect this store speaks (the same method as Claimer's).
	Dialect() outbox.Dialect

	// Enqueue inserts messages in their own transaction (for scripts and the CLI; services
	// use outbox.Enqueue inside their business transaction).
	Enqueue(ctx context.Context, msgs ...outbox.Message) error

	// Stats summarises the backlog and dead letters.
	Stats(ctx context.Context) (Stats, error)
	// DeadLetters lists dead letters in id order after afterID, at most limit.
	DeadLetters(ctx context.Context, afterID int64, limit int) ([]DeadLetter, error)
	// RetryDeadLetters moves dead letters back into the outbox (attempts reset, published
	// again from the end of the queue). ids nil means all. Returns how many moved.
	RetryDeadLetters(ctx context.Context, ids []int64) (int64, error)
	// PurgeDeadLetters deletes dead letters. ids nil means all. Returns how many were deleted.
	PurgeDeadLetters(ctx context.Context, ids []int64) (int64, error)
}

// Migrator creates, upgrades and removes the outbox's tables with the numbered migrations the
// dialect embeds. Concurrent migrations of one table are serialised by the dialect.
type Migrator interface {
	// MigrateUp applies every pending migration (idempotent) and returns the versions applied.
	MigrateUp(ctx context.Context) ([]int, error)
	// MigrateDown reverts the most recent `steps` migrations (all when steps <= 0) and
	// returns the versions reverted, newest first. It returns ErrNoMigrations when nothing is
	// applied.
	MigrateDown(ctx context.Context, steps int) ([]int, error)
	// MigrationStatus lists every known migration and whether it is applied. It only reads:
	// it creates nothing.
	MigrationStatus(ctx context.Context) ([]MigrationStatus, error)
}

// Notifier is implemented by stores that can tell when new messages commit (PostgreSQL's
// LISTEN/NOTIFY, SQLite's commit hooks and PRAGMA data_version), so relays wake within
// milliseconds instead of at the next poll.
type Notifier interface {
	// Listen calls wake after commits that inserted messages, until ctx ends. keyHashes are
	// the partition hashes (the h of ClaimRequest) of the inserted messages' keys, so that
	// only the workers whose share holds them need to wake; nil means unknown (a large
	// insert, an older trigger, a reconnect): every worker wakes. It keeps reconnecting on
	// its own; it returns only when ctx ends.
	Listen(ctx context.Context, wake func(keyHashes []uint64)) error
}

// ErrNoGate is returned by WakeGate.OpenGate when the store's schema has no gate (PostgreSQL
// before migration 6): its commits notify whether or not a relay waits.
var ErrNoGate = errors.New("dialect: the schema has no wake-up gate")

// WakeGate is implemented by a Notifier whose commits notify only while a relay says it
// waits for notifications (PostgreSQL from migration 6), so that producers pay nothing for
// wake-ups while every relay is busy.
//
// A relay about to wait calls OpenGate, then InProgress, then claims once more, and then
// waits out the transactions InProgress listed (Running) before it relies on notifications
// alone: a transaction that inserted before the gate opened did not notify, and may commit
// after the re-check. While it waits it renews the gate (OpenGate) before the lease runs out;
// a renewal that finds the gate was shut (another relay closed it, or the lease ran out)
// means commits may have gone unnotified: the waiting workers re-check as above. Relays
// advance the gate's clock (AdvanceGate) so that the leases of relays that stopped renewing
// run out, and close it (CloseGate) when their last waiting worker wakes.
type WakeGate interface {
	// OpenGate has commits notify for at least lease from the call, and reports whether the
	// gate was open just before. It returns ErrNoGate when the schema has no gate (its
	// commits always notify).
	OpenGate(ctx context.Context, lease time.Duration) (wasOpen bool, err error)
	// CloseGate shuts the gate now, whoever opened it.
	CloseGate(ctx context.Context) error
	// AdvanceGate lets leases that ran out shut the gate.
	AdvanceGate(ctx context.Context) error
	// InProgress lists the transactions in progress: called after OpenGate, a superset of
	// those that inserted without notifying and have not committed yet.
	InProgress(ctx context.Context) ([]uint64, error)
	// Running returns those of txs that are still in progress.
	Running(ctx context.Context, txs []uint64) ([]uint64, error)
}

// InShare reports whether partition hash h falls in the share of the key space that a claim
// with partition, partitions, slot and slots takes (see ClaimRequest).
func InShare(h uint64, partition, partitions, slot, slots int) bool {
	parts, sl := uint64(max(partitions, 1)), uint64(max(slots, 1))
	return h%parts == uint64(partition) && (h/parts)%sl == uint64(slot)
}

// ClaimRequest selects what Claim may take.
type ClaimRequest struct {
	// Limit is the most messages to claim. Required (> 0).
	Limit int
	// MaxBytes bounds the claim's payload bytes: messages are taken in id order until their
	// payloads reach it (one message is always taken). 0 means no bound.
	MaxBytes int
	// Partition and Partitions split the key space among relays: only messages with
	// h mod Partitions == Partition are claimed, where h is a hash of the key (of the
	// message_id for messages without a key). Partitions <= 1 means all.
	Partition, Partitions int
	// Slot and Slots split a relay's partition among its workers: (h / Partitions) mod
	// Slots == Slot. Two levels, so relays with different worker counts still cover every
	// key. Slots <= 1 means all.
	Slot, Slots int
	// SkipKeys are keys the caller knows are blocked (an earlier message is in backoff);
	// skipping them keeps a blocked key's backlog from filling every claim. A hint only:
	// Claim's own order check is what guarantees per-key order.
	SkipKeys []string
	// Topics, when not empty, restricts the claim to messages of these exact topics (a relay
	// dedicated to some channels). Per-key order still spans all topics: a message is not
	// claimed while an earlier message of its key, on any topic, is unpublished.
	Topics []string
	// ExcludeTopics, when not empty, leaves out the messages of these exact topics (topics an
	// operator paused, see Pauser): they wait, and per-key order still spans all topics, so a
	// later message of a key whose earlier message is of an excluded topic waits too. A
	// Claimer must honour it: relay/poll releases a claimed message of an excluded topic
	// unchanged, so a store that returned it again would have the relay claim and release it
	// in a loop for as long as the pause lasts.
	ExcludeTopics []string
	// Retain marks published messages instead of deleting them (see outbox.Outcome).
	Retain bool
}

// BlockedKey is a key a claim could not take, and until when that is likely to stay so
// (zero when unknown): a hint for later claims' SkipKeys.
type BlockedKey struct {
	Key   string
	Until time.Time
}

// Claim is a set of messages held by one relay worker until Finish.
type Claim interface {
	// Records are the claimed messages in id order.
	Records() []outbox.Record
	// Blocked lists keys whose messages were left out because an earlier message of the key
	// was not claimable (in backoff, held elsewhere, or of a topic outside the request).
	Blocked() []BlockedKey
	// Finish applies the outcome and releases the claim. Records named in no list are
	// released unchanged, to be claimed again. Finish must be called exactly once.
	Finish(ctx context.Context, o outbox.Outcome) error
}

// Checkpointer is implemented by claims that can record published messages before Finish
// while they keep holding the rest, so that a relay killed or cut from the database in the
// middle of a long batch does not publish again what the batch had already delivered (the
// relay checkpoints each wave of a batch: relay.Checkpointer).
type Checkpointer interface {
	// Checkpoint durably applies o.Published (deleted, or marked published when the claim
	// retains) and counts o.Duplicates, and keeps holding the claim's other messages.
	// o.Retry and o.Dead must be empty; every message named must be held by the claim and
	// not checkpointed yet. Finish still receives the checkpointed messages in its outcome
	// and does not apply them again.
	//
	// On an error the claim holds nothing any more: Finish then applies nothing and reports
	// an error unless the rest of its outcome needed no write. Whether the failed
	// checkpoint's messages were recorded is unknown.
	Checkpoint(ctx context.Context, o outbox.Outcome) error
}

// Ref names one message of the outbox: its sequence number and its message id, so that a
// sequence number reused by another message is not mistaken for it.
type Ref struct {
	Seq int64
	ID  uuid.UUID
}

// Recorder is implemented by stores that can record published messages outside any claim:
// what a relay acknowledged but could not record, because the database failed under its
// claim (see relay.Recorder). A relay applies its remembered outcomes through it as soon as
// the database answers again, so that they are not lost when the messages' share of the keys
// has moved to another relay meanwhile, which would publish them again.
type Recorder interface {
	// RecordPublished deletes the unpublished rows of refs (retain: marks them published)
	// that no claim holds now, and returns the sequence numbers that need nothing more:
	// those it recorded and those no longer unpublished in the table (recorded, or taken,
	// by another relay). The rows a claim holds are left alone and not returned.
	RecordPublished(ctx context.Context, refs []Ref, retain bool) (done []int64, err error)
}

// NewlyCheckpointed checks that o holds only published messages (and duplicates) and that
// none of them was checkpointed already (recorded[seq]) or is named twice, and returns them
// as a set: the validation a claim's Checkpoint shares. Its errors read "checkpointing
// claim: ...".
func NewlyCheckpointed(o outbox.Outcome, recorded map[int64]bool) (map[int64]bool, error) {
	if len(o.Retry)+len(o.Dead) > 0 {
		return nil, errors.New("checkpointing claim: only published messages can be checkpointed")
	}
	now := make(map[int64]bool, len(o.Published))
	for _, seq := range o.Published {
		if recorded[seq] || now[seq] {
			return nil, fmt.Errorf("checkpointing claim: message %d is checkpointed already", seq)
		}
		now[seq] = true
	}
	return now, nil
}

// Unrecorded returns o without the published messages and duplicates that checkpoints
// recorded (recorded[seq]): what a claim's Finish still has to apply.
func Unrecorded(o outbox.Outcome, recorded map[int64]bool) outbox.Outcome {
	if len(recorded) == 0 {
		return o
	}
	keep := func(seqs []int64) []int64 {
		out := make([]int64, 0, len(seqs))
		for _, seq := range seqs {
			if !recorded[seq] {
				out = append(out, seq)
			}
		}
		return out
	}
	o.Published, o.Duplicates = keep(o.Published), keep(o.Duplicates)
	return o
}

// ErrClaimLost is reported (wrapped) by a claim's Finish after a failed Checkpoint: the claim
// holds no message any more, and the outcome was not applied.
var ErrClaimLost = errors.New("dialect: claim no longer holds its messages")

// Exhaustive is implemented by claims that can tell whether they read their whole share: a
// claim reporting Exhausted took every unpublished message of its share that its snapshot
// saw, except those it had to leave (not ready, of a blocked or skipped key). None was left
// for the limit, the byte bound or an unreadable row. A relay that learns of new commits
// (Notifier) need not claim again after such a claim until a notification or its next
// poll: whatever it did not see committed after it, and notifies.
type Exhaustive interface {
	Exhausted() bool
}

// Membership is a relay's position among the live relays of one outbox table.
type Membership struct {
	Index int // 0-based position of this relay
	Count int // number of live relays (>= 1)
}

// MembershipOf returns relayID's place among ids, the live relays' ids in the order every
// relay reads them (a Heartbeat's result). The error says the relay is not among them.
func MembershipOf(ids []string, relayID string) (Membership, error) {
	i := slices.Index(ids, relayID)
	if i < 0 {
		return Membership{}, fmt.Errorf("relay %q missing from membership", relayID)
	}
	return Membership{Index: i, Count: len(ids)}, nil
}

// Stats summarises one outbox.
type Stats struct {
	Pending       int64         // unpublished messages
	Ready         int64         // of which available now (not in backoff)
	Retrying      int64         // of which attempted at least once
	OldestPending time.Duration // age of the oldest unpublished message (0 when none)
	DeadLetters   int64
	Relays        int // live relays
	// BrokerDuplicates counts messages their broker acknowledged as duplicates
	// (outbox.Outcome.Duplicates), since the table was created.
	BrokerDuplicates int64
	// Topics lists, per topic with unpublished messages that failed at least once (or wait
	// for their sink: outbox.Retry.NotAttempted), how many there are and the error of the one that
	// failed last. At most 100 topics, most failing first.
	Topics []TopicErrors
}

// TopicErrors summarises the failing messages of one topic.
type TopicErrors struct {
	Topic     string
	Failing   int64  // unpublished messages with an error
	LastError string // the error of the one that failed last
}

// DeadLetter is a message that exhausted its attempts or failed permanently.
type DeadLetter struct {
	ID        int64 // dead-letter row id
	Record    outbox.Record
	LastError string
	FailedAt  time.Time
}

// MigrationStatus reports one migration.
type MigrationStatus struct {
	Version   int
	Name      string
	Applied   bool
	AppliedAt time.Time
}
