package binlog

// Crash simulates a relay process dying: the replication and lock connections are dropped
// abruptly, no final position is saved, pending database writes are abandoned, and Run
// returns at once. The Source cannot be used again.
func (s *Source) Crash() {
	close(s.crashed)
	if k := s.kill.Load(); k != nil {
		(*k)()
	}
}

// LockName is the GET_LOCK name of the source name on database.table.
func LockName(database, table, name string) string { return lockName(database, table, name) }

// SetRead moves the read position Lag measures from, as if the stream had read up to it.
func (s *Source) SetRead(file string, pos uint32) {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	s.lastRead.file, s.lastRead.pos = file, pos
}
