package mqtt

import (
	"net"
	"syscall"
)

// quickAck makes Linux acknowledge what the broker sends at once instead of up to 40ms
// later. Brokers that leave Nagle's algorithm on for their sockets (Mosquitto's default,
// set_tcp_nodelay false) hold back a PUBACK until the previous one is acknowledged; with
// delayed ACKs every batch would end with a 40ms wait for its last PUBACKs. TCP_QUICKACK
// does not stick, so it is set again after every read.
func quickAck(nc net.Conn) net.Conn {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nc
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nc
	}
	return &quickAckConn{TCPConn: tc, rc: rc}
}

type quickAckConn struct {
	*net.TCPConn
	rc syscall.RawConn
}

func (c *quickAckConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	if n > 0 {
		_ = c.rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
		})
	}
	return n, err
}
