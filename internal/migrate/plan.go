package migrate

import (
	"time"

	"github.com/outboxgo/outbox/dialect"
)

// Pending returns the migrations of ms (in version order) that applied does not hold, in the
// order to apply them.
func Pending(ms []Migration, applied map[int]time.Time) []Migration {
	var out []Migration
	for _, m := range ms {
		if _, ok := applied[m.Version]; !ok {
			out = append(out, m)
		}
	}
	return out
}

// ToRevert returns the applied migrations of ms (in version order), newest first, in the order
// to revert them: steps of them, or all when steps <= 0.
func ToRevert(ms []Migration, applied map[int]time.Time, steps int) []Migration {
	var out []Migration
	for i := len(ms) - 1; i >= 0 && (steps <= 0 || len(out) < steps); i-- {
		if _, ok := applied[ms[i].Version]; ok {
			out = append(out, ms[i])
		}
	}
	return out
}

// Status returns the state of every migration of ms.
func Status(ms []Migration, applied map[int]time.Time) []dialect.MigrationStatus {
	out := make([]dialect.MigrationStatus, 0, len(ms))
	for _, m := range ms {
		at, ok := applied[m.Version]
		out = append(out, dialect.MigrationStatus{Version: m.Version, Name: m.Name, Applied: ok, AppliedAt: at})
	}
	return out
}
