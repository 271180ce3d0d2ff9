package binlog

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	gomysql "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/sqlident"
)

// Position is a point in a server's binary log.
type Position struct {
	// GTID is the GTID position: on MariaDB the last GTID of each replication domain
	// ("0-1-4711", comma-separated for several domains), on MySQL the executed GTID set. Empty
	// when unknown (MySQL with gtid_mode OFF, or a MariaDB server that has logged no GTID yet).
	GTID string
	// File and Pos are the binary log coordinates of the same point.
	File string
	Pos  uint32
	// UpdatedAt is when the position was saved (ReadPosition) or read (ServerPosition).
	UpdatedAt time.Time
}

// String formats the position for logs: the GTID when known, and the coordinates.
func (p Position) String() string {
	c := p.File + ":" + strconv.FormatUint(uint64(p.Pos), 10)
	if p.GTID == "" {
		return c
	}
	return p.GTID + " (" + c + ")"
}

// ErrBinlogDisabled is returned when the server does not write a binary log (log_bin is off).
var ErrBinlogDisabled = errors.New("binlog: the server's binary log is off (set log_bin, binlog_format=ROW, binlog_row_image=FULL)")

// queryer is what position queries need: a *sql.DB or the source's *sql.Conn.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// positionTable is the position table of outbox table t.
func positionTable(t sqlident.Table) string { return t.Derived("_binlog").QuotedMySQL() }

// ReadPosition returns the saved position of the source name (default: table) on the outbox
// table, and whether one is saved. table is the outbox table as configured ("outbox",
// "shop.outbox"; default outbox.DefaultTable), in db's current database when unqualified.
// `outbox status` compares it with ServerPosition.
func ReadPosition(ctx context.Context, db *sql.DB, table, name string) (Position, bool, error) {
	table = cmp.Or(table, outbox.DefaultTable)
	t, err := sqlident.Parse(table)
	if err != nil {
		return Position{}, false, &outbox.ConfigError{Field: "table", Reason: err.Error()}
	}
	name = cmp.Or(name, table)
	if reason := checkName(name); reason != "" {
		return Position{}, false, &outbox.ConfigError{Field: "name", Reason: reason}
	}
	return readPosition(ctx, db, t, name)
}

func readPosition(ctx context.Context, q queryer, t sqlident.Table, name string) (Position, bool, error) {
	var (
		p  Position
		us int64
	)
	err := q.QueryRowContext(ctx, "SELECT gtid, file, pos, TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', updated_at) FROM "+
		positionTable(t)+" WHERE name = ?", name).Scan(&p.GTID, &p.File, &p.Pos, &us)
	if errors.Is(err, sql.ErrNoRows) {
		return Position{}, false, nil
	}
	if isMySQLError(err, 1146) { // ER_NO_SUCH_TABLE
		return Position{}, false, fmt.Errorf("binlog: position table %s does not exist (run the migrations: outbox migrate up): %w",
			t.Derived("_binlog"), err)
	}
	if err != nil {
		return Position{}, false, fmt.Errorf("binlog: reading the position of %q: %w", name, err)
	}
	p.UpdatedAt = time.UnixMicro(us).UTC()
	return p, true, nil
}

// savePosition writes p as the position of name.
func savePosition(ctx context.Context, c *sql.Conn, t sqlident.Table, name string, p Position) error {
	_, err := c.ExecContext(ctx, "INSERT INTO "+positionTable(t)+" (name, gtid, file, pos, updated_at) VALUES (?, ?, ?, ?, UTC_TIMESTAMP(6))"+
		" ON DUPLICATE KEY UPDATE gtid = VALUES(gtid), file = VALUES(file), pos = VALUES(pos), updated_at = VALUES(updated_at)",
		name, p.GTID, p.File, p.Pos)
	if err != nil {
		return fmt.Errorf("saving the position: %w", err)
	}
	return nil
}

// ServerPosition returns the server's current binary log position: SHOW MASTER STATUS (SHOW
// BINARY LOG STATUS on MySQL 8.4+) and, on MariaDB, @@gtid_binlog_pos. It returns
// ErrBinlogDisabled when the server keeps no binary log.
func ServerPosition(ctx context.Context, db *sql.DB) (Position, error) {
	var version string
	if err := db.QueryRowContext(ctx, `SELECT VERSION()`).Scan(&version); err != nil {
		return Position{}, fmt.Errorf("binlog: reading the server version: %w", err)
	}
	return serverPosition(ctx, db, flavorOf(version))
}

func flavorOf(version string) string {
	if strings.Contains(strings.ToLower(version), "mariadb") {
		return mysql.MariaDBFlavor
	}
	return mysql.MySQLFlavor
}

func serverPosition(ctx context.Context, q queryer, flavor string) (Position, error) {
	var p Position
	if flavor == mysql.MariaDBFlavor {
		// Read before the coordinates: if transactions commit in between, the GTID position is
		// the earlier of the two, and a source starting from it misses nothing.
		if err := q.QueryRowContext(ctx, `SELECT @@gtid_binlog_pos`).Scan(&p.GTID); err != nil {
			return Position{}, fmt.Errorf("binlog: reading @@gtid_binlog_pos: %w", err)
		}
	}
	rows, err := q.QueryContext(ctx, `SHOW MASTER STATUS`)
	if isMySQLError(err, 1064) { // ER_PARSE_ERROR: MySQL 8.4 renamed it
		rows, err = q.QueryContext(ctx, `SHOW BINARY LOG STATUS`)
	}
	if err != nil {
		return Position{}, fmt.Errorf("binlog: reading the server's binary log position: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return Position{}, fmt.Errorf("binlog: reading the server's binary log position: %w", err)
	}
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return Position{}, fmt.Errorf("binlog: reading the server's binary log position: %w", err)
		}
		return Position{}, ErrBinlogDisabled
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return Position{}, fmt.Errorf("binlog: reading the server's binary log position: %w", err)
	}
	for i, c := range cols {
		switch strings.ToLower(c) {
		case "file":
			p.File = vals[i].String
		case "position":
			n, err := strconv.ParseUint(vals[i].String, 10, 32)
			if err != nil {
				return Position{}, fmt.Errorf("binlog: server position %q: %w", vals[i].String, err)
			}
			p.Pos = uint32(n)
		case "executed_gtid_set":
			if flavor == mysql.MySQLFlavor {
				p.GTID = strings.Join(strings.Fields(vals[i].String), "")
			}
		}
	}
	if err := rows.Err(); err != nil {
		return Position{}, fmt.Errorf("binlog: reading the server's binary log position: %w", err)
	}
	p.UpdatedAt = time.Now().UTC()
	return p, nil
}

func isMySQLError(err error, number uint16) bool {
	var me *gomysql.MySQLError
	return errors.As(err, &me) && me.Number == number
}

// gtidTracker follows the GTID position as transactions are confirmed.
type gtidTracker struct {
	flavor string
	// MariaDB: the last GTID of each domain.
	domains map[uint32]mysql.MariadbGTID
	// MySQL: the executed set; nil when not tracked (gtid_mode OFF when the source started).
	set *mysql.MysqlGTIDSet
}

// gtidOf is the GTID of one transaction.
type gtidOf struct {
	maria mysql.MariadbGTID // MariaDB; zero when none
	sid   uuid.UUID         // MySQL
	gno   int64             // MySQL; 0 when none
}

func newTracker(flavor, gtid string) (*gtidTracker, error) {
	g := &gtidTracker{flavor: flavor}
	if flavor == mysql.MariaDBFlavor {
		g.domains = map[uint32]mysql.MariadbGTID{}
		for _, part := range strings.Split(gtid, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			id, err := mysql.ParseMariadbGTID(part)
			if err != nil {
				return nil, fmt.Errorf("GTID position %q: %w", gtid, err)
			}
			g.domains[id.DomainID] = *id
		}
		return g, nil
	}
	if gtid == "" {
		return g, nil // not tracked
	}
	set, err := mysql.ParseMysqlGTIDSet(gtid)
	if err != nil {
		return nil, fmt.Errorf("GTID set %q: %w", gtid, err)
	}
	g.set = set.(*mysql.MysqlGTIDSet)
	return g, nil
}

// add records a confirmed transaction.
func (g *gtidTracker) add(id gtidOf) {
	switch {
	case g.domains != nil && id.maria.SequenceNumber != 0:
		g.domains[id.maria.DomainID] = id.maria
	case g.set != nil && id.gno != 0:
		g.set.AddGTID(id.sid, id.gno)
	}
}

// String formats the position: MariaDB's "domain-server-seq" per domain, in domain order (the
// form @@gtid_slave_pos and @slave_connect_state take), or MySQL's GTID set.
func (g *gtidTracker) String() string {
	switch {
	case g.domains != nil:
		keys := make([]uint32, 0, len(g.domains))
		for d := range g.domains {
			keys = append(keys, d)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, d := range keys {
			id := g.domains[d]
			parts[i] = id.String()
		}
		return strings.Join(parts, ",")
	case g.set != nil:
		return g.set.String()
	}
	return ""
}

// startSet is the GTID set to start streaming from, or nil to start from file and position.
func (g *gtidTracker) startSet() mysql.GTIDSet {
	switch {
	case len(g.domains) > 0:
		set := &mysql.MariadbGTIDSet{Sets: map[uint32]map[uint32]*mysql.MariadbGTID{}}
		for d, id := range g.domains {
			set.Sets[d] = map[uint32]*mysql.MariadbGTID{id.ServerID: id.Clone()}
		}
		return set
	case g.set != nil && !g.set.IsEmpty():
		return g.set.Clone()
	}
	return nil
}
