package postgres

// Internals for the tests of package postgres_test.

func ClaimNowaitSQL(s *Store) string     { return s.q.claimNowait }
func ClaimSkipLockedSQL(s *Store) string { return s.q.claimSkipLocked }
func TableOf(s *Store) string            { return s.table.Quoted() }
func SchemaOf(s *Store) string           { return s.table.Schema }
func DeadOf(s *Store) string             { return s.table.Derived("_dead").Quoted() }
