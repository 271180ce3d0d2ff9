//go:build !linux

package mqtt

import "net"

// quickAck is a no-op outside Linux: TCP_QUICKACK is Linux's.
func quickAck(nc net.Conn) net.Conn { return nc }
