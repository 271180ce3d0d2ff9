package chaos

import (
	"net"
	"sync"

	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
)

// startProxy forwards a loopback port to target; it can cut every connection and refuse new
// ones until restored: what a network partition, or a server that went away, looks like to a
// client.
func startProxy(target string) (*faultproxy.Proxy, error) { return faultproxy.New(target) }

// cutListener wraps a broker's own listener (kfake's, whose clients learn the brokers'
// addresses from metadata and so would bypass a proxy) so that its connections can be cut and
// new ones refused.
type cutListener struct {
	net.Listener
	c *cutter
}

// cutter tracks the connections of cutListeners.
type cutter struct {
	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
}

func newCutter() *cutter { return &cutter{conns: map[net.Conn]struct{}{}} }

func (c *cutter) listen(network, address string) (net.Listener, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return &cutListener{Listener: ln, c: c}, nil
}

// Cut closes every open connection and refuses new ones until Restore.
func (c *cutter) Cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = true
	for conn := range c.conns {
		_ = conn.Close()
		delete(c.conns, conn)
	}
}

// Restore accepts connections again.
func (c *cutter) Restore() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = false
}

func (l *cutListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.c.mu.Lock()
		down := l.c.down
		if !down {
			l.c.conns[conn] = struct{}{}
		}
		l.c.mu.Unlock()
		if down {
			// Reset, not close: a refused connection looks like a closed port or a
			// firewall's reject (ECONNRESET), which clients retry. A clean close right
			// after the accept reads to franz-go as a TLS mismatch (ErrFirstReadEOF), and
			// it fails the partition's in-flight batch, which is then published again.
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = conn.Close()
			continue
		}
		return &trackedConn{Conn: conn, c: l.c}, nil
	}
}

// trackedConn forgets itself when closed, so that the cutter's set does not grow.
type trackedConn struct {
	net.Conn
	c    *cutter
	once sync.Once
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.c.mu.Lock()
		delete(t.c.conns, t.Conn)
		t.c.mu.Unlock()
	})
	return t.Conn.Close()
}
