package chaos

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
)

// TestJudgeHostile holds the verdict on hostile rows to their fates: a row that must be dead
// fails when it is missing, delivered (even if also dead-lettered) or dead for a reason not
// naming its problem; a row that must be delivered fails when dead-lettered, missing or
// delivered without its headers; an ordinary message in the dead letters is a violation;
// a row that must be refused fails when the database took it or refused it for another
// reason; any other failed INSERT counts only when the row turns up.
func TestJudgeHostile(t *testing.T) {
	classes := []hostileClass{
		{name: "dead", fate: FateDead, reason: `"Nats-Rollup"`},
		{name: "delivered", fate: FateDelivered, want: map[string]string{"x-count": "1"}},
		{name: "refused", fate: FateRefused, reason: "Duplicate entry"},
	}
	led := newLedger(1, time.Now())
	led.add([]entry{{id: outbox.NewID(), seq: 0, txStart: true, state: stateCommitted}})
	rows := []struct {
		class     int
		insertErr string
		dead      string // reason; "" = not dead-lettered
		delivered bool
		headers   map[string][]string
	}{
		{class: 0, dead: `header "Nats-Rollup": reserved`}, // ok
		{class: 0}, // missing
		{class: 0, dead: "nats: rollup not permitted"},                                    // wrong reason
		{class: 0, delivered: true},                                                       // delivered
		{class: 0, dead: `header "Nats-Rollup": reserved`, delivered: true},               // delivered too
		{class: 0, insertErr: "connection reset"},                                         // INSERT failed, absent: not counted
		{class: 1, delivered: true, headers: map[string][]string{"X-Count": {"1"}}},       // ok
		{class: 1, delivered: true, headers: map[string][]string{"x-count": {"2"}}},       // wrong headers
		{class: 1, dead: "unreadable"},                                                    // dead
		{class: 1},                                                                        // missing
		{class: 2, insertErr: "Error 1062: Duplicate entry 'x' for key 'message_id_key'"}, // ok
		{class: 2, insertErr: "connection reset"},                                         // refused for another reason
		{class: 2, delivered: true},                                                       // accepted
		{class: 2, insertErr: errNoOriginal.Error()},                                      // not written: skipped
	}
	var dead []deadLetter
	for i, r := range rows {
		n := led.addHostile(hostileRow{class: r.class, messageID: outbox.NewID().String(), key: "h0"})
		p := hostilePayload(n, classes[r.class].name)
		var err error
		switch r.insertErr {
		case "":
		case errNoOriginal.Error():
			err = fmt.Errorf("wrapped: %w", errNoOriginal)
		default:
			err = errors.New(r.insertErr)
		}
		led.settleHostile(n, p, err, classes[r.class].fate != FateRefused)
		if r.delivered {
			led.deliver(delivery{payload: p, headers: r.headers, at: time.Now()})
		}
		if r.dead != "" {
			dead = append(dead, deadLetter{payload: p, reason: r.dead, attempts: 1})
		}
		if n != i {
			t.Fatalf("addHostile = %d, want %d", n, i)
		}
	}
	dead = append(dead, deadLetter{payload: makePayload(0, 0, 0, false, 16), reason: "boom"}, deadLetter{payload: []byte("other")})
	var rep Report
	led.mu.Lock()
	judgeHostile(&rep, led, classes, dead, true)
	led.mu.Unlock()

	if len(rep.Hostile) != 3 {
		t.Fatalf("classes = %+v", rep.Hostile)
	}
	d, v := rep.Hostile[0], rep.Hostile[1]
	if d.Expected != 5 || d.DeadLettered != 3 || d.Delivered != 2 || d.Missing != 1 || d.WrongReason != 1 || d.Uncertain != 1 || d.Failed() != 4 {
		t.Errorf("dead class = %+v, failed %d; want 5 expected, 3 dead, 2 delivered, 1 missing, 1 wrong reason, 1 uncertain, 4 failed", d, d.Failed())
	}
	if v.Expected != 4 || v.Delivered != 2 || v.DeadLettered != 1 || v.Missing != 1 || v.WrongHeaders != 1 || v.Failed() != 3 {
		t.Errorf("delivered class = %+v, failed %d; want 4 expected, 2 delivered, 1 dead, 1 missing, 1 wrong headers, 3 failed", v, v.Failed())
	}
	if f := rep.Hostile[2]; f.Expected != 3 || f.Refused != 2 || f.Accepted != 1 || f.WrongReason != 1 || f.Delivered != 1 || f.Skipped != 1 || f.Failed() != 2 {
		t.Errorf("refused class = %+v, failed %d; want 3 expected, 2 refused, 1 accepted, 1 wrong reason, 1 delivered, 1 skipped, 2 failed", f, f.Failed())
	}
	if rep.DeadOrdinary != 1 || rep.DeadUnknown != 1 {
		t.Errorf("dead ordinary %d, unknown %d; want 1 and 1", rep.DeadOrdinary, rep.DeadUnknown)
	}
	if rep.OK() || rep.HostileFailed() != 9 {
		t.Errorf("OK = %v, hostile failed %d; want a violation and 9", rep.OK(), rep.HostileFailed())
	}
	if led.unknown != 0 {
		t.Errorf("hostile deliveries counted as unknown: %d", led.unknown)
	}

	// Without headers from the broker, a delivered class is judged on delivery alone.
	rep = Report{}
	led.mu.Lock()
	judgeHostile(&rep, led, classes, dead, false)
	led.mu.Unlock()
	if v := rep.Hostile[1]; v.WrongHeaders != 0 {
		t.Errorf("headers judged without headers: %+v", v)
	}
}

// TestReportPublishLimit: deliveries over (max_attempts + 1) × messages violate the run.
func TestReportPublishLimit(t *testing.T) {
	rep := Report{Deliveries: 11, PublishLimit: 10}
	if rep.OK() || !strings.Contains(strings.Join(rep.Violations(), ";"), "over the limit") {
		t.Errorf("violations %v, want the publish limit", rep.Violations())
	}
	rep.Deliveries = 10
	if !rep.OK() {
		t.Errorf("violations %v at the limit", rep.Violations())
	}
}
