package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/outboxgo/outbox"
)

// Hostile rows are written with plain SQL, as a producer in another language (or a person
// with a SQL prompt) would: rows the relay's decoder cannot read, and rows whose headers
// would speak for the envelope or for the broker. Each has a class that says what must
// become of it.

// Fates of hostile rows.
const (
	// FateDead: the row must end in the dead-letter table, with a reason naming the problem
	// (the column, or the header), and never reach the broker.
	FateDead = "dead"
	// FateDelivered: the row is readable once decoded as documented and must be delivered,
	// with the headers the class expects.
	FateDelivered = "delivered"
	// FateRefused: the database must refuse the INSERT, with an error naming the problem
	// (two spellings of one message id meet in its unique index).
	FateRefused = "refused"
)

// hostileClass is one kind of hostile row on one database.
type hostileClass struct {
	name string
	fate string
	// reason must appear in the dead letter's reason (FateDead: the column's or the
	// header's name) or in the INSERT's error (FateRefused).
	reason string
	// headers is the row's headers column as JSON text ("" for the column's default).
	headers string
	// want are headers a delivery must carry (FateDelivered), checked where the consumer
	// sees headers.
	want map[string]string
	// insert is the statement that writes the row, with the database's placeholders for
	// message_id, key, payload and headers (in that order).
	insert string
	// upperID: the row's message_id is the upper-case form of a committed message's id (the
	// row takes that message's key).
	upperID bool
	// textID: the row's message_id is this prefix and the row's number, not a UUID.
	textID string
}

// errNoOriginal: a row of an upperID class was not written: the message whose id it spells
// otherwise is no longer in the table, or its row could not be locked for the INSERT (a
// deadlock with a relay's claim, a lock wait timeout): the database was never asked.
var errNoOriginal = errors.New("not written: the original row is no longer in the outbox table or could not be locked")

// hostileRow is one hostile row as written.
type hostileRow struct {
	class     int // index into the database's hostile classes
	messageID string
	key       string
	payload   []byte
	at        time.Time
	uncertain bool   // the INSERT failed unexpectedly: the row may or may not exist
	insertErr string // the INSERT's error
	skipped   bool   // not written (errNoOriginal)

	copies   uint32
	headers  map[string][]string // of the first delivery, when the broker reports headers
	dead     bool
	reason   string
	attempts int
}

// hostilePrefix starts every hostile row's payload: "chaos hostile h=<n> class=<name> ".
const hostilePrefix = "chaos hostile h="

func hostilePayload(n int, class string) []byte {
	return fmt.Appendf(nil, "%s%d class=%s ", hostilePrefix, n, class)
}

// parseHostile returns the hostile row number of a payload made by hostilePayload.
func parseHostile(p []byte) (int, bool) { return parseNumber(p, hostilePrefix) }

// hostileKeys is how many keys of their own hostile rows use besides the producers' keys.
const hostileKeys = 8

// hostiles writes Config.Hostile rows per second, cycling through the database's classes,
// half on the producers' keys and half on keys of their own (h0...).
type hostiles struct {
	cfg     *Config
	db      database
	ledger  *ledger
	classes []hostileClass

	errs    atomic.Int64
	lastErr atomic.Pointer[error]
}

func (h *hostiles) run(ctx context.Context) {
	if h.cfg.Hostile <= 0 || len(h.classes) == 0 {
		return
	}
	rng := rand.New(rand.NewPCG(h.cfg.Seed, 0x4057))
	every := time.Second / time.Duration(h.cfg.Hostile)
	t := time.NewTicker(every)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c := n % len(h.classes)
		cl := &h.classes[c]
		row := hostileRow{class: c}
		if rng.IntN(2) == 0 {
			row.key = keyName(rng.IntN(h.cfg.Keys))
		} else {
			row.key = "h" + strconv.Itoa(rng.IntN(hostileKeys))
		}
		switch {
		case cl.upperID:
			id, key, ok := h.ledger.lastCommitted()
			if !ok {
				continue
			}
			row.messageID, row.key = strings.ToUpper(id), key
		case cl.textID != "":
			row.messageID = cl.textID + strconv.Itoa(n)
		default:
			row.messageID = outbox.NewID().String()
		}
		idx := h.ledger.addHostile(row)
		payload := hostilePayload(idx, cl.name)
		ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err := h.db.insertHostile(ictx, cl, row.messageID, row.key, payload)
		cancel()
		h.ledger.settleHostile(idx, payload, err, cl.fate != FateRefused)
		if err != nil && cl.fate != FateRefused && !errors.Is(err, errNoOriginal) {
			err = fmt.Errorf("hostile row (%s): %w", cl.name, err)
			h.errs.Add(1)
			h.lastErr.Store(&err)
		}
	}
}

// HostileClass is what became of one class of hostile rows.
type HostileClass struct {
	Class string `json:"class"`
	// Fate is what must become of the rows: FateDead or FateDelivered.
	Fate string `json:"fate"`
	// Reason is what a dead letter's reason (FateDead) or the INSERT's error (FateRefused)
	// must name.
	Reason string `json:"reason,omitempty"`
	// Expected are the rows written (their INSERT succeeded), or for FateRefused tried.
	Expected     int `json:"expected"`
	Refused      int `json:"refused"`       // INSERTs the database refused (FateRefused)
	Accepted     int `json:"accepted"`      // INSERTs it took, though it must refuse them (FateRefused)
	DeadLettered int `json:"dead_lettered"` // in the dead-letter table
	Delivered    int `json:"delivered"`     // reached the consumer
	Missing      int `json:"missing"`       // in neither (or still in the outbox)
	// WrongReason are dead letters, or refusals, whose reason does not name Reason.
	WrongReason int `json:"wrong_reason"`
	// WrongHeaders are deliveries without the headers the class expects (FateDelivered, on
	// sinks whose consumer sees headers).
	WrongHeaders int `json:"wrong_headers"`
	// Uncertain rows: the INSERT failed (the database went away), so they need not exist;
	// they count only when found.
	Uncertain int `json:"uncertain"`
	// Skipped rows were not written: the message whose id they spell otherwise had left the
	// table (FateRefused classes of another spelling of an id).
	Skipped int      `json:"skipped"`
	Sample  []string `json:"sample,omitempty"`
}

// Failed reports how many of the class's rows did not meet their fate.
func (c *HostileClass) Failed() int {
	switch c.Fate {
	case FateRefused:
		return c.Accepted + c.WrongReason
	case FateDead:
		// Delivered rows are failures whether or not they were also dead-lettered.
		return c.Delivered + c.Missing + c.WrongReason
	default:
		return c.DeadLettered + c.Missing + c.WrongHeaders
	}
}

// deadLetter is one row of the dead-letter table, as verify reads it.
type deadLetter struct {
	messageID string
	payload   []byte
	reason    string
	attempts  int
}

// judgeHostile fills rep.Hostile from the ledger's hostile rows and the dead-letter table,
// and counts the ordinary messages that were dead-lettered. The caller holds led.mu.
func judgeHostile(rep *Report, led *ledger, classes []hostileClass, dead []deadLetter, headersSeen bool) {
	for _, d := range dead {
		if i, ok := parseHostile(d.payload); ok && i < len(led.hostile) {
			h := &led.hostile[i]
			h.dead, h.reason, h.attempts = true, d.reason, d.attempts
			continue
		}
		if i, ok := parsePayload(d.payload); ok && i < len(led.entries) {
			rep.DeadOrdinary++
			if len(rep.DeadOrdinarySample) < sampleLimit {
				rep.DeadOrdinarySample = append(rep.DeadOrdinarySample, fmt.Sprintf("%s key %s seq %d after %d attempts: %s",
					led.entries[i].id, keyName(int(led.entries[i].key)), led.entries[i].seq, d.attempts, d.reason))
			}
			continue
		}
		rep.DeadUnknown++
	}
	if len(classes) == 0 {
		return
	}
	out := make([]HostileClass, len(classes))
	for i, c := range classes {
		out[i] = HostileClass{Class: c.name, Fate: c.fate, Reason: c.reason}
	}
	for i := range led.hostile {
		h := &led.hostile[i]
		c, cl := &out[h.class], &classes[h.class]
		if h.skipped {
			c.Skipped++
			continue
		}
		if cl.fate == FateRefused {
			judgeRefused(c, cl, h)
			continue
		}
		if h.uncertain {
			c.Uncertain++
			if !h.dead && h.copies == 0 {
				continue
			}
		}
		c.Expected++
		var problem string
		if h.dead {
			c.DeadLettered++
			if cl.fate == FateDead && !strings.Contains(h.reason, cl.reason) {
				c.WrongReason++
				problem = fmt.Sprintf("dead-lettered with a reason not naming %q: %q", cl.reason, h.reason)
			}
		}
		if h.copies > 0 {
			c.Delivered++
			if cl.fate == FateDelivered && headersSeen && !hasHeaders(h.headers, cl.want) {
				c.WrongHeaders++
				problem = fmt.Sprintf("delivered with headers %v, want %v", h.headers, cl.want)
			}
		}
		switch {
		case !h.dead && h.copies == 0:
			c.Missing++
			problem = "neither dead-lettered nor delivered"
		case cl.fate == FateDead && h.copies > 0:
			problem = fmt.Sprintf("delivered %d times (dead-lettered: %v)", h.copies, h.dead)
		case cl.fate == FateDelivered && h.dead:
			problem = fmt.Sprintf("dead-lettered, want delivered: %q", h.reason)
		}
		if problem != "" && len(c.Sample) < 5 {
			c.Sample = append(c.Sample, fmt.Sprintf("message_id %q key %s: %s", h.messageID, h.key, problem))
		}
	}
	rep.Hostile = out
}

// judgeRefused judges a row of a FateRefused class: its INSERT must have failed, naming the
// problem.
func judgeRefused(c *HostileClass, cl *hostileClass, h *hostileRow) {
	c.Expected++
	var problem string
	switch {
	case h.insertErr == "":
		c.Accepted++
		problem = fmt.Sprintf("the database took the row (dead-lettered %v, delivered %d times)", h.dead, h.copies)
	case !strings.Contains(h.insertErr, cl.reason):
		c.Refused++
		c.WrongReason++
		problem = fmt.Sprintf("refused, but not naming %q: %s", cl.reason, h.insertErr)
	default:
		c.Refused++
	}
	if h.dead {
		c.DeadLettered++
	}
	if h.copies > 0 {
		c.Delivered++
	}
	if problem != "" && len(c.Sample) < 5 {
		c.Sample = append(c.Sample, fmt.Sprintf("message_id %q key %s: %s", h.messageID, h.key, problem))
	}
}

// hasHeaders reports whether got holds every header of want (names in any letter case, as
// brokers and bindings may fold them).
func hasHeaders(got map[string][]string, want map[string]string) bool {
	for name, v := range want {
		found := false
		for k, vs := range got {
			if strings.EqualFold(k, name) && len(vs) > 0 && vs[0] == v {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// headerClasses are the hostile headers every sink must refuse (sink.CheckHeaders): names a
// broker interprets or that speak for the CloudEvents envelope, in any letter case, a value
// that would end the header line early, and a structured-mode content type. insert is the
// database's statement for a row with headers (see hostileClass.insert).
func headerClasses(insert string) []hostileClass {
	hs := []struct{ name, header, value string }{
		{"header-nats-rollup", "Nats-Rollup", "sub"},         // would purge the subject
		{"header-nats-msg-id", "Nats-Msg-Id", "chaos-fixed"}, // would dedupe other messages away
		{"header-nats-expected-stream", "Nats-Expected-Stream", "ELSEWHERE"},
		{"header-ce-id-upper", "CE-ID", "forged"},
		{"header-ce-source-mixed", "Ce-Source", "forged"},
		{"header-ce-underscore-id", "ce_id", "forged"},
		{"header-amqp-ce-id", "cloudEvents:id", "forged"},
		{"header-bare-id", "id", "forged"},
		{"header-value-crlf", "x-note", "a\r\nNats-Rollup: sub"},
		{"header-structured-content-type", "content-type", "application/cloudevents+json"},
	}
	out := make([]hostileClass, len(hs))
	for i, h := range hs {
		js, _ := json.Marshal(map[string]string{h.header: h.value})
		out[i] = hostileClass{name: h.name, fate: FateDead, reason: strconv.Quote(h.header), headers: string(js), insert: insert}
	}
	return out
}

// nonStringHeaders is a headers object whose values are not strings: the dialects keep such
// values as their JSON text (rows written by other languages), so the row is delivered.
func nonStringHeaders(insert string) hostileClass {
	return hostileClass{name: "headers-non-string", fate: FateDelivered, headers: `{"x-count": 1, "x-flag": true}`,
		want: map[string]string{"x-count": "1", "x-flag": "true"}, insert: insert}
}
