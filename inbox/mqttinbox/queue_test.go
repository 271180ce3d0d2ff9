package mqttinbox

import (
	"slices"
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// TestQueueConnections: arrivals are told apart by the connection they came on, not by when
// OnConnectionUp ran. A connection's arrivals are not handed out before its up; on a resumed
// session, up drops the older connections' arrivals still queued (the broker resends them)
// and keeps those that came on the new connection before it.
func TestQueueConnections(t *testing.T) {
	q := newQueue()
	c1, c2, c3 := &paho.Client{}, &paho.Client{}, &paho.Client{}
	pub := func(id uint16) *paho.Publish { return &paho.Publish{PacketID: id, QoS: 1} }
	check := func(what string, n int, want []uint16, client *paho.Client, wantEpoch uint64) {
		t.Helper()
		got, epoch := q.take(n)
		var ids []uint16
		for _, a := range got {
			ids = append(ids, a.pub.PacketID)
			if a.client != client {
				t.Errorf("%s: packet %d from connection %d, not the expected one", what, a.pub.PacketID, a.conn)
			}
		}
		if !slices.Equal(ids, want) || epoch != wantEpoch {
			t.Fatalf("%s: took %v in epoch %d, want %v in epoch %d", what, ids, epoch, want, wantEpoch)
		}
	}

	q.push(c1, pub(1)) // the first connection's resent messages come before its up
	check("before the first up", 10, nil, nil, 0)
	if gen := q.up(true); gen != 1 {
		t.Fatalf("first connection numbered %d", gen)
	}
	q.push(c1, pub(2))
	q.push(c1, pub(3))
	q.push(c1, pub(4))
	check("first connection", 1, []uint16{1}, c1, 0)

	q.down()
	for id := range uint16(4) {
		q.push(c2, pub(id+1)) // the resumed session's resent messages, before its up
	}
	check("the lost connection's", 1, []uint16{2}, c1, 0)
	if gen := q.up(true); gen != 2 {
		t.Fatalf("second connection numbered %d", gen)
	}
	check("resumed", 10, []uint16{1, 2, 3, 4}, c2, 1) // the first connection's 3 and 4 dropped

	q.down()
	q.push(c3, pub(5))
	check("before the third up", 10, nil, nil, 1)
	q.up(false) // a new session: nothing resent, nothing dropped
	check("new session", 10, []uint16{5}, c3, 1)
}
