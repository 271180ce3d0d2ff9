package wal

// Crash simulates a relay process dying: the replication connection is closed abruptly, no
// final position is confirmed, pending database writes are abandoned, and Run returns at once.
// The Source cannot be used again.
func (s *Source) Crash() {
	close(s.crashed)
	if c := s.stream.Load(); c != nil {
		_ = c.Conn().Close()
	}
}

// CheckWALLevel is the wal_level check of Setup.
var CheckWALLevel = checkWALLevel
