package chaos

import (
	"testing"
	"time"

	"github.com/outboxgo/outbox"
)

// TestEffectFields reads the key and sequence number back from the producers' payloads, and
// refuses anything else.
func TestEffectFields(t *testing.T) {
	key, seq, ok := effectFields(makePayload(12, 7, 41, false, 128))
	if !ok || key != "k7" || seq != 41 {
		t.Fatalf("effectFields = %q %d %v, want k7 41 true", key, seq, ok)
	}
	for _, p := range [][]byte{
		makePayload(1, 2, -1, true, 64), // a rolled-back transaction's: no sequence number
		[]byte("chaos hostile=3 xxxx"),
		[]byte("chaos i=1 k=x s=2 "),
		nil,
	} {
		if k, s, ok := effectFields(p); ok {
			t.Errorf("effectFields(%q) = %q %d true, want false", p, k, s)
		}
	}
}

// TestJudgeEffects checks that each way an effect can be wrong is counted: a committed
// message without an effect, one applied twice, a key's messages applied out of order, an
// effect of a message that never committed; and that a clean history counts nothing.
func TestJudgeEffects(t *testing.T) {
	// Key 0: seqs 0..3 committed; key 1: seqs 0..1 committed; one rolled back on key 1.
	l := newLedger(2, time.Now())
	add := func(key, seq int, committed bool) string {
		id := outbox.NewID()
		l.add([]entry{{id: id, key: int32(key), seq: int32(seq), inDB: committed, txStart: true}})
		return id.String()
	}
	k0 := []string{add(0, 0, true), add(0, 1, true), add(0, 2, true), add(0, 3, true)}
	k1 := []string{add(1, 0, true), add(1, 1, true)}
	rolledBack := add(1, -1, false)
	row := func(id, key string, seq int, apply int64) effectRow {
		return effectRow{messageID: id, key: key, seq: seq, apply: apply}
	}

	clean := []effectRow{
		row(k0[0], "k0", 0, 1), row(k0[1], "k0", 1, 2), row(k0[2], "k0", 2, 3), row(k0[3], "k0", 3, 4),
		row(k1[0], "k1", 0, 1), row(k1[1], "k1", 1, 2),
	}
	var rep Report
	rep.Consumers = 1
	judgeEffects(&rep, l, clean)
	if rep.EffectsApplied != 6 || rep.EffectsMissing != 0 || rep.EffectsDouble != 0 || rep.EffectsOutOfOrder != 0 || rep.EffectsUnknown != 0 || !rep.OK() {
		t.Fatalf("clean history: %+v, violations %v", rep, rep.Violations())
	}

	bad := []effectRow{
		// k0: seq 2 applied before seq 1, seq 3 missing, seq 0 applied twice (last).
		row(k0[0], "k0", 0, 1), row(k0[2], "k0", 2, 2), row(k0[1], "k0", 1, 3), row(k0[0], "k0", 0, 4),
		// k1: in order; plus the rolled-back message's effect.
		row(k1[0], "k1", 0, 1), row(k1[1], "k1", 1, 2), row(rolledBack, "k1", -1, 3),
	}
	rep = Report{Consumers: 1}
	judgeEffects(&rep, l, bad)
	if rep.EffectsMissing != 1 || rep.EffectsDouble != 1 || rep.EffectsDoubleRows != 1 || rep.EffectsOutOfOrder != 1 || rep.EffectsUnknown != 1 {
		t.Fatalf("missing %d, double %d (+%d), out of order %d, unknown %d; want 1 each",
			rep.EffectsMissing, rep.EffectsDouble, rep.EffectsDoubleRows, rep.EffectsOutOfOrder, rep.EffectsUnknown)
	}
	if len(rep.Violations()) != 4 || rep.OK() {
		t.Fatalf("violations %v, want 4", rep.Violations())
	}
	if len(rep.EffectsOrderSample) != 1 || len(rep.EffectsMissingSample) != 1 || len(rep.EffectsDoubleSample) != 1 {
		t.Fatalf("samples: %v %v %v", rep.EffectsOrderSample, rep.EffectsMissingSample, rep.EffectsDoubleSample)
	}
	t.Logf("samples: %v | %v | %v", rep.EffectsOrderSample, rep.EffectsMissingSample, rep.EffectsDoubleSample)

	rep = Report{Consumers: 1, InboxDeadLetters: 2}
	judgeEffects(&rep, l, clean)
	if rep.OK() {
		t.Fatal("inbox dead letters are not a violation")
	}
}
