package chaos

import (
	"net"
	"sync"
)

// proxy forwards a loopback port to a target address and can cut every connection and refuse
// new ones until restored: what a network partition, or a server that went away, looks like to
// a client. It is internal/faultproxy without testing.TB, so that the checker can run as a
// program.
type proxy struct {
	target string
	ln     net.Listener

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// startProxy listens on 127.0.0.1:<random port> and forwards to target.
func startProxy(target string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients should dial.
func (p *proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every forwarded connection and refuses new ones until Restore.
func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		_ = c.Close()
	}
}

// Restore accepts connections again.
func (p *proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// Close stops the proxy and waits for its goroutines.
func (p *proxy) Close() {
	_ = p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // listener closed
		}
		if !p.track(client) {
			_ = client.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(client)
	}
}

func (p *proxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client)
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(server) {
		_ = server.Close()
		return
	}
	defer p.untrack(server)
	defer server.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		// Close both directions so that the peer sees the cut at once.
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done
	<-done
}

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
