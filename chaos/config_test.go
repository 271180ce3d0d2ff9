package chaos

import (
	"strings"
	"testing"
)

// TestConfigDatabaseSource: each source runs on its database only, the database follows
// the source by default, and what cannot run is refused naming the field.
func TestConfigDatabaseSource(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		cfg      Config
		database string // after defaults, when valid
		err      string // a substring of the error
	}{
		{name: "default", cfg: Config{}, database: DatabasePostgres},
		{name: "binlog defaults to mariadb", cfg: Config{Source: SourceBinlog}, database: DatabaseMariaDB},
		{name: "poll on mariadb", cfg: Config{Database: DatabaseMariaDB}, database: DatabaseMariaDB},
		{name: "wal on mariadb", cfg: Config{Database: DatabaseMariaDB, Source: SourceWAL}, err: "source: wal reads PostgreSQL"},
		{name: "wal-logical on mariadb", cfg: Config{Database: DatabaseMariaDB, Source: SourceWALLogical}, err: "source: wal-logical"},
		{name: "binlog on postgres", cfg: Config{Database: DatabasePostgres, Source: SourceBinlog}, err: "source: binlog reads the MariaDB"},
		{name: "pg restart on mariadb", cfg: Config{Database: DatabaseMariaDB, PGRestart: true}, err: "pg restart:"},
		{name: "unknown database", cfg: Config{Database: "oracle"}, err: "database: \"oracle\""},
		{name: "unix socket", cfg: Config{Database: DatabaseMariaDB, MySQLDSN: "root@unix(/run/mysqld.sock)/test"}, err: "mysql dsn: network \"unix\""},
		{name: "bad dsn", cfg: Config{Database: DatabaseMariaDB, MySQLDSN: "root@tcp(127.0.0.1:3306)"}, err: "mysql dsn:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := tc.cfg
			cfg.Sink = SinkNATS
			cfg.setDefaults()
			err := cfg.validate()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("validate: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("validate: %v, want an error with %q", err, tc.err)
			case tc.err == "" && cfg.Database != tc.database:
				t.Fatalf("database %q, want %q", cfg.Database, tc.database)
			}
		})
	}
}
