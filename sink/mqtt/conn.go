package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// The sink speaks the publishing half of MQTT 5 itself, with paho.golang's packets package
// for CONNECT, CONNACK, DISCONNECT and error PUBACKs. paho.Client publishes a QoS 1 message
// by blocking until its PUBACK, and its asynchronous mode reports no outcome; a batch would
// cost one round trip per message. The sink instead writes a batch back to back (within the
// broker's Receive Maximum), matches each PUBACK to its message by packet identifier, and
// fails everything in flight the moment the connection drops, where paho's session keeps
// waiting until a timeout.

// Protocol limits.
const (
	maxString       = 65535     // bytes in an MQTT UTF-8 string
	maxRemaining    = 268435455 // the largest remaining length a packet can declare
	maxServerPacket = 1 << 20   // the largest packet the sink accepts from the broker
)

// conn is one network connection to the broker. It dies as a whole: every message waiting
// for its PUBACK then fails retryably, and the sink dials a new one with a clean session.
type conn struct {
	nc        net.Conn
	keepAlive time.Duration
	maxPacket int // the broker's Maximum Packet Size (the protocol's when it sets none)
	writeTO   time.Duration

	sem    chan struct{} // held by the batch writing: its messages go out back to back, in order
	window chan struct{} // one token per message in flight: the broker's Receive Maximum

	wmu       sync.Mutex // guards bw
	bw        *bufio.Writer
	lastWrite atomic.Int64 // unix nanoseconds of the last write, for keep-alive

	mu       sync.Mutex
	inflight map[uint16]slotRef // packet identifier → message waiting for its PUBACK; nil once dead
	nextID   uint16
	err      error

	dead     chan struct{} // closed when the connection died and its waiting messages failed
	killOnce sync.Once
	done     sync.WaitGroup // reader and pinger
}

// refusedError is a CONNACK with a failure reason code.
type refusedError struct {
	code   byte
	reason string
}

func (e *refusedError) Error() string {
	msg := fmt.Sprintf("broker refused the connection: %s (reason code 0x%02X)", connackReason(e.code), e.code)
	if e.reason != "" {
		msg += ": " + e.reason
	}
	return msg
}

// permanent reports whether retrying the connection cannot help without a config change.
func (e *refusedError) permanent() bool {
	switch e.code {
	case packets.ConnackUnsupportedProtocolVersion, packets.ConnackInvalidClientID,
		packets.ConnackBadUsernameOrPassword, packets.ConnackNotAuthorized, packets.ConnackBanned,
		packets.ConnackBadAuthenticationMethod, packets.ConnackQoSNotSupported:
		return true
	}
	return false
}

func connackReason(code byte) string {
	switch code {
	case packets.ConnackUnsupportedProtocolVersion:
		return "unsupported protocol version (the sink needs MQTT 5)"
	case packets.ConnackInvalidClientID:
		return "client identifier not valid"
	case packets.ConnackBadUsernameOrPassword:
		return "bad user name or password"
	case packets.ConnackNotAuthorized:
		return "not authorized"
	case packets.ConnackServerUnavailable:
		return "server unavailable"
	case packets.ConnackServerBusy:
		return "server busy"
	case packets.ConnackBanned:
		return "banned"
	case packets.ConnackBadAuthenticationMethod:
		return "bad authentication method"
	case packets.ConnackQoSNotSupported:
		return "QoS 1 not supported (the sink publishes at QoS 1)"
	case packets.ConnackUseAnotherServer, packets.ConnackServerMoved:
		return "use another server"
	case packets.ConnackConnectionRateExceeded:
		return "connection rate exceeded"
	default:
		return "error"
	}
}

// connect dials the broker and performs the CONNECT/CONNACK exchange with a clean session.
func (s *Sink) connect(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.connectTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, fmt.Errorf("dialing: %w", err)
	}
	deadline, _ := ctx.Deadline()
	_ = nc.SetDeadline(deadline)
	// Close (ctx canceled) interrupts the handshake.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	c, err := s.handshake(quickAck(nc))
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		_ = nc.Close()
		if ctx.Err() != nil && !errors.As(err, new(*refusedError)) {
			return nil, fmt.Errorf("connecting: %w (%v)", ctx.Err(), err)
		}
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	c.done.Add(2)
	go c.read()
	go c.ping()
	return c, nil
}

func (s *Sink) handshake(nc net.Conn) (*conn, error) {
	if s.useTLS {
		cfg := s.tls.Clone()
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(s.addr)
			cfg.ServerName = host
		}
		tc := tls.Client(nc, cfg)
		if err := tc.Handshake(); err != nil { //nolint:noctx // connect bounds it: nc has ctx's deadline, and cancel interrupts it
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		nc = tc
	}
	cp := &packets.Connect{
		ProtocolName:    "MQTT",
		ProtocolVersion: 5,
		ClientID:        s.clientID,
		CleanStart:      true, // nothing to resume: unacknowledged messages were reported failed
		KeepAlive:       uint16(s.keepAlive / time.Second),
		Properties:      &packets.Properties{},
	}
	if s.username != "" {
		cp.UsernameFlag, cp.Username = true, s.username
	}
	if len(s.password) > 0 {
		cp.PasswordFlag, cp.Password = true, s.password
	}
	if _, err := cp.WriteTo(nc); err != nil {
		return nil, fmt.Errorf("sending CONNECT: %w", err)
	}
	p, err := packets.ReadPacket(nc)
	if err != nil {
		return nil, fmt.Errorf("waiting for CONNACK: %w", err)
	}
	ca, ok := p.Content.(*packets.Connack)
	if !ok {
		return nil, fmt.Errorf("broker answered CONNECT with %s instead of CONNACK", p.PacketType())
	}
	props := ca.Properties
	if props == nil {
		props = &packets.Properties{}
	}
	if ca.ReasonCode >= 0x80 {
		return nil, &refusedError{code: ca.ReasonCode, reason: props.ReasonString}
	}
	if props.MaximumQOS != nil && *props.MaximumQOS < 1 {
		return nil, &refusedError{code: packets.ConnackQoSNotSupported}
	}
	c := &conn{
		nc:        nc,
		keepAlive: s.keepAlive,
		maxPacket: maxRemaining + 5,
		writeTO:   s.timeout,
		sem:       make(chan struct{}, 1),
		bw:        bufio.NewWriterSize(nc, 64<<10),
		inflight:  make(map[uint16]slotRef),
		dead:      make(chan struct{}),
	}
	recvMax := 65535 // the protocol default
	if props.ReceiveMaximum != nil && *props.ReceiveMaximum > 0 {
		recvMax = int(*props.ReceiveMaximum)
	}
	c.window = make(chan struct{}, recvMax)
	if props.MaximumPacketSize != nil && *props.MaximumPacketSize > 0 {
		c.maxPacket = int(*props.MaximumPacketSize)
	}
	if props.ServerKeepAlive != nil {
		c.keepAlive = time.Duration(*props.ServerKeepAlive) * time.Second
	}
	c.lastWrite.Store(time.Now().UnixNano())
	return c, nil
}

// kill marks the connection dead for err, closes it and fails every message waiting for a
// PUBACK. The first call wins.
func (c *conn) kill(err error) {
	c.killOnce.Do(func() {
		c.mu.Lock()
		c.err = err
		inflight := c.inflight
		c.inflight = nil
		c.mu.Unlock()
		_ = c.nc.Close()
		lostErr := fmt.Errorf("mqtt sink: %w: %v", ErrConnectionLost, err)
		for _, ref := range inflight {
			ref.b.Confirm(ref.i, lostErr)
		}
		close(c.dead)
	})
}

// reason returns why the connection died.
func (c *conn) reason() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// wait waits for the reader and the pinger to return.
func (c *conn) wait() { c.done.Wait() }

// disconnect ends the connection on purpose: DISCONNECT (normal disconnection), then close.
// A sender left behind by a canceled Publish may hold the writer in a stuck write: then the
// connection is just closed (the broker treats it like a network failure; the sink sets no
// will message).
func (c *conn) disconnect() {
	if c.wmu.TryLock() {
		_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.bw.Write([]byte{packets.DISCONNECT << 4, 0})
		_ = c.bw.Flush()
		c.wmu.Unlock()
	}
	c.kill(errors.New("sink closed"))
	c.wait()
}

// write writes p (and payload) to the buffer. Caller holds c.wmu. A write stuck for the
// publish timeout (a broker that stopped reading) fails and kills the connection.
func (c *conn) write(p, payload []byte) error {
	now := time.Now()
	if c.bw.Available() < len(p)+len(payload) {
		_ = c.nc.SetWriteDeadline(now.Add(c.writeTO))
	}
	if _, err := c.bw.Write(p); err != nil {
		return err
	}
	if _, err := c.bw.Write(payload); err != nil {
		return err
	}
	c.lastWrite.Store(now.UnixNano())
	return nil
}

// flush sends what is buffered.
func (c *conn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.bw.Buffered() == 0 {
		return nil
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.writeTO))
	return c.bw.Flush()
}

// ping sends PINGREQ when nothing was written for half the keep-alive interval.
func (c *conn) ping() {
	defer c.done.Done()
	if c.keepAlive <= 0 {
		<-c.dead
		return
	}
	t := time.NewTicker(c.keepAlive / 2)
	defer t.Stop()
	for {
		select {
		case <-c.dead:
			return
		case now := <-t.C:
			if now.UnixNano()-c.lastWrite.Load() < int64(c.keepAlive/2) {
				continue
			}
			c.wmu.Lock()
			_ = c.nc.SetWriteDeadline(now.Add(c.writeTO))
			_, err := c.bw.Write([]byte{packets.PINGREQ << 4, 0})
			if err == nil {
				err = c.bw.Flush()
			}
			c.lastWrite.Store(now.UnixNano())
			c.wmu.Unlock()
			if err != nil {
				c.kill(fmt.Errorf("sending PINGREQ: %w", err))
				return
			}
		}
	}
}

// read handles what the broker sends: PUBACKs, PINGRESPs and a DISCONNECT.
func (c *conn) read() {
	defer c.done.Done()
	br := bufio.NewReaderSize(c.nc, 32<<10)
	var body []byte
	var deadlineSet time.Time
	for {
		if c.keepAlive > 0 {
			// A broker silent for 1.5 keep-alive intervals (it answers our pings) is gone.
			// Moving the deadline is not free: do it at most every quarter interval.
			if now := time.Now(); now.Sub(deadlineSet) > c.keepAlive/4 {
				_ = c.nc.SetReadDeadline(now.Add(c.keepAlive * 3 / 2))
				deadlineSet = now
			}
		}
		typ, n, err := readHeader(br)
		if err != nil {
			c.kill(readErr(err))
			return
		}
		if n > maxServerPacket {
			c.kill(fmt.Errorf("broker sent a packet of %d bytes (type %d)", n, typ>>4))
			return
		}
		if cap(body) < n {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(br, body); err != nil {
			c.kill(readErr(err))
			return
		}
		switch typ >> 4 {
		case packets.PUBACK:
			if err := c.puback(body); err != nil {
				c.kill(err)
				return
			}
		case packets.PINGRESP:
		case packets.DISCONNECT:
			c.kill(disconnectErr(body))
			return
		default:
			// The sink subscribes to nothing and does not authenticate with AUTH.
			c.kill(fmt.Errorf("protocol error: unexpected packet type %d from the broker", typ>>4))
			return
		}
	}
}

func readErr(err error) error {
	if errors.Is(err, io.EOF) {
		return errors.New("broker closed the connection")
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errors.New("no packet from the broker for 1.5 keep-alive intervals")
	}
	return fmt.Errorf("reading: %w", err)
}

// readHeader reads a fixed header: the type and flags byte and the remaining length.
func readHeader(br *bufio.Reader) (byte, int, error) {
	typ, err := br.ReadByte()
	if err != nil {
		return 0, 0, err
	}
	n, mult := 0, 1
	for i := 0; ; i++ {
		b, err := br.ReadByte()
		if err != nil {
			return 0, 0, err
		}
		n += int(b&0x7f) * mult
		if b&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, 0, errors.New("malformed remaining length")
		}
		mult <<= 7
	}
	return typ, n, nil
}

// puback settles the message of one PUBACK.
func (c *conn) puback(body []byte) error {
	if len(body) < 2 {
		return errors.New("protocol error: PUBACK without packet identifier")
	}
	id := uint16(body[0])<<8 | uint16(body[1])
	code := byte(0) // a PUBACK of two bytes means success
	if len(body) > 2 {
		code = body[2]
	}
	c.mu.Lock()
	ref, ok := c.inflight[id]
	if ok {
		delete(c.inflight, id)
	}
	c.mu.Unlock()
	if !ok {
		return nil // not ours to settle (a message failed already): ignore
	}
	<-c.window
	var err error
	if code >= 0x80 {
		reason := ""
		if len(body) > 3 {
			pa := &packets.Puback{Properties: &packets.Properties{}}
			if pa.Unpack(bytes.NewBuffer(body)) == nil {
				reason = pa.Properties.ReasonString
			}
		}
		err = pubackErr(code, reason, ref.b.topics[ref.i])
	}
	ref.b.Confirm(ref.i, err)
	return nil
}

// register allocates a packet identifier for ref. It reports false when the connection is
// dead. The caller holds a window token, so fewer than 65535 identifiers are in use.
func (c *conn) register(ref slotRef) (uint16, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight == nil {
		return 0, false
	}
	for {
		c.nextID++
		if c.nextID == 0 {
			c.nextID = 1
		}
		if _, used := c.inflight[c.nextID]; !used {
			break
		}
	}
	c.inflight[c.nextID] = ref
	return c.nextID, true
}
