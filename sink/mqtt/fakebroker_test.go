package mqtt

import (
	"bufio"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// fakeBroker is a scripted MQTT 5 broker for what the real one cannot be made to do on a
// shared machine: refuse connections, answer with failure reason codes, advertise a small
// Receive Maximum or Maximum Packet Size, disconnect, stay silent.
type fakeBroker struct {
	t  testing.TB
	ln net.Listener

	// connack returns the CONNACK for the n-th connection (from 0).
	connack func(n int) *packets.Connack
	// onPublish decides the answer to a PUBLISH: the PUBACK reason code and reason string,
	// or disconnect (a DISCONNECT with that reason code, then close) when disconnect > 0,
	// or no answer at all when silent.
	onPublish func(p *packets.Publish) (code byte, reason string, disconnect byte, silent bool)
	// noPingResp makes the broker ignore PINGREQ.
	noPingResp bool
	// ackDelay holds PUBACKs back until no packet came for this long, to let messages
	// pile up in flight.
	ackDelay time.Duration

	mu          sync.Mutex
	conns       int
	published   []*packets.Publish
	maxInflight int
	pings       int
	wg          sync.WaitGroup
	open        map[net.Conn]bool
}

func startFakeBroker(t testing.TB) *fakeBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBroker{t: t, ln: ln, open: map[net.Conn]bool{}}
	b.connack = func(int) *packets.Connack { return &packets.Connack{Properties: &packets.Properties{}} }
	b.onPublish = func(*packets.Publish) (byte, string, byte, bool) { return 0, "", 0, false }
	b.wg.Add(1)
	go b.accept()
	t.Cleanup(b.close)
	return b
}

// configure changes the broker's behaviour safely while it runs.
func (b *fakeBroker) configure(f func(b *fakeBroker)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b)
}

func (b *fakeBroker) url() string { return "tcp://" + b.ln.Addr().String() }

func (b *fakeBroker) close() {
	_ = b.ln.Close()
	b.mu.Lock()
	for c := range b.open {
		_ = c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *fakeBroker) accept() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		n := b.conns
		b.conns++
		b.open[c] = true
		b.mu.Unlock()
		b.wg.Add(1)
		go b.serve(c, n)
	}
}

func (b *fakeBroker) serve(c net.Conn, n int) {
	defer b.wg.Done()
	defer func() {
		b.mu.Lock()
		delete(b.open, c)
		b.mu.Unlock()
		_ = c.Close()
	}()
	br := bufio.NewReader(c)
	p, err := packets.ReadPacket(br)
	if err != nil || p.Type != packets.CONNECT {
		return
	}
	b.mu.Lock()
	connack, ackDelay, noPingResp := b.connack, b.ackDelay, b.noPingResp
	b.mu.Unlock()
	ca := connack(n)
	if _, err := ca.WriteTo(c); err != nil || ca.ReasonCode >= 0x80 {
		return
	}
	var pending []*packets.Puback
	flush := func() bool {
		for _, pa := range pending {
			if _, err := pa.WriteTo(c); err != nil {
				return false
			}
		}
		pending = pending[:0]
		return true
	}
	for {
		if ackDelay > 0 {
			_ = c.SetReadDeadline(time.Now().Add(ackDelay))
		}
		p, err := packets.ReadPacket(br)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if !flush() {
				return
			}
			continue
		}
		if err != nil {
			return
		}
		switch p.Type {
		case packets.PINGREQ:
			b.mu.Lock()
			b.pings++
			b.mu.Unlock()
			if !noPingResp {
				if _, err := c.Write([]byte{packets.PINGRESP << 4, 0}); err != nil {
					return
				}
			}
		case packets.DISCONNECT:
			return
		case packets.PUBLISH:
			pub := p.Content.(*packets.Publish)
			b.mu.Lock()
			b.published = append(b.published, pub)
			onPublish := b.onPublish
			b.mu.Unlock()
			code, reason, disconnect, silent := onPublish(pub)
			if disconnect > 0 {
				d := &packets.Disconnect{ReasonCode: disconnect, Properties: &packets.Properties{ReasonString: reason}}
				_, _ = d.WriteTo(c)
				return
			}
			if silent {
				continue
			}
			pa := &packets.Puback{PacketID: pub.PacketID, ReasonCode: code, Properties: &packets.Properties{ReasonString: reason}}
			pending = append(pending, pa)
			b.mu.Lock()
			b.maxInflight = max(b.maxInflight, len(pending))
			b.mu.Unlock()
			if ackDelay == 0 && !flush() {
				return
			}
		default:
			b.t.Errorf("fake broker: unexpected packet %s", p.PacketType())
			return
		}
	}
}

func (b *fakeBroker) stats() (conns, published, maxInflight, pings int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.conns, len(b.published), b.maxInflight, b.pings
}

func u16(v uint16) *uint16 { return &v }
func u32(v uint32) *uint32 { return &v }
