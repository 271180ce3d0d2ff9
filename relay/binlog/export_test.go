package binlog

import "context"

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

// LagFrom is Lag's byte count from file:pos to the server's current position, and that
// position.
func (s *Source) LagFrom(ctx context.Context, file string, pos uint32) (int64, Position, error) {
	srv, err := ServerPosition(ctx, s.cfg.DB)
	if err != nil {
		return 0, Position{}, err
	}
	if srv.File == file {
		return int64(srv.Pos) - int64(pos), srv, nil
	}
	n, err := s.bytesAcross(ctx, readPoint{file: file, pos: pos}, srv)
	return n, srv, err
}
