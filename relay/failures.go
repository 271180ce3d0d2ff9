package relay

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outboxgo/outbox"
)

// DefaultFailureSummaryInterval is how often a failure that lasts is summarised in the log.
const DefaultFailureSummaryInterval = 30 * time.Second

// maxTrackedTopics bounds the failures followed one by one; past it, further topics are
// followed together under "(other topics)".
const maxTrackedTopics = 1000

const otherTopics = "(other topics)"

// failureLog makes retryable publish failures visible without flooding the log: a failure is
// logged at WARN when it starts (per destination and topic, and again when its error
// changes), summarised while it lasts (at most once per interval: how many attempts failed,
// the age of the oldest message), and logged at INFO when the topic publishes again after an
// interval without failures.
type failureLog struct {
	logger   *slog.Logger
	interval time.Duration

	n  atomic.Int32 // len(m), read without the lock on the hot path
	mu sync.Mutex
	m  map[failKey]*failing
}

type failKey struct{ dest, topic string }

type failing struct {
	since    time.Time
	last     time.Time // the latest failure
	err      string
	total    int64     // failed attempts since it began
	count    int64     // failed attempts since the last summary
	oldest   time.Time // created_at of the oldest message failing since the last summary
	reported time.Time
}

func (f *failureLog) failed(dest string, rec *outbox.Record, err error, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = make(map[failKey]*failing)
	}
	k := failKey{dest, rec.Topic}
	fl := f.m[k]
	if fl == nil && len(f.m) >= maxTrackedTopics {
		k.topic = otherTopics
		fl = f.m[k]
	}
	msg := err.Error()
	if fl == nil {
		fl = &failing{since: now, reported: now}
		f.m[k] = fl
		f.n.Store(int32(len(f.m)))
		f.logger.Warn("publishing failed; the message will be retried",
			slog.String("sink", dest), slog.String("topic", logValue(k.topic)), slog.String("error", msg),
			slog.String("message_id", rec.ID.String()), slog.Int("attempt", rec.Attempts+1))
	} else if msg != fl.err {
		f.logger.Warn("publishing failing with another error; the message will be retried",
			slog.String("sink", dest), slog.String("topic", logValue(k.topic)), slog.String("error", msg),
			slog.String("message_id", rec.ID.String()), slog.Int("attempt", rec.Attempts+1),
			slog.Duration("failing_for", now.Sub(fl.since).Round(time.Millisecond)))
	}
	fl.err, fl.last = msg, now
	fl.total++
	fl.count++
	if !rec.CreatedAt.IsZero() && (fl.oldest.IsZero() || rec.CreatedAt.Before(fl.oldest)) {
		fl.oldest = rec.CreatedAt
	}
	if now.Sub(fl.reported) >= f.interval {
		attrs := []any{slog.String("sink", dest), slog.String("topic", logValue(k.topic)), slog.String("error", msg),
			slog.Int64("failed_attempts", fl.count), slog.Duration("failing_for", now.Sub(fl.since).Round(time.Second))}
		if !fl.oldest.IsZero() {
			attrs = append(attrs, slog.Duration("oldest_message_age", now.Sub(fl.oldest).Round(time.Millisecond)))
		}
		f.logger.Warn("publishing still failing", attrs...)
		fl.count, fl.oldest, fl.reported = 0, time.Time{}, now
	}
}

// succeeded notes that dest accepted a message of topic: a failure of that topic is over when
// none was seen for a summary interval (a topic where one message keeps failing while others
// go through is still failing).
func (f *failureLog) succeeded(dest, topic string, now time.Time) {
	if f.n.Load() == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	k := failKey{dest, topic}
	fl := f.m[k]
	if fl == nil {
		if k.topic = otherTopics; f.m[k] == nil {
			return
		}
		fl = f.m[k]
	}
	if now.Sub(fl.last) < f.interval {
		return
	}
	delete(f.m, k)
	f.n.Store(int32(len(f.m)))
	f.logger.Info("publishing recovered",
		slog.String("sink", dest), slog.String("topic", logValue(k.topic)),
		slog.Duration("failed_for", now.Sub(fl.since).Round(time.Millisecond)), slog.Int64("failed_attempts", fl.total))
}

// maxLogValue bounds row data (topics, keys) in log lines.
const maxLogValue = 200

// logValue cuts s for a log line, on a character boundary, marking the cut.
func logValue(s string) string {
	return outbox.CutText(s, maxLogValue)
}
