package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/relay/wal"
)

// postgresDB is the PostgreSQL server of Config.DatabaseURL. The run's tables are in a schema
// of its own, chaos_<id>; the relays' sessions carry the application_name
// outbox_chaos_<id>_r<relay>, by which db-terminate finds them.
type postgresDB struct {
	cfg *Config
	log *slog.Logger
	id  string

	pool    *pgxpool.Pool
	schema  string // set once created: close drops it
	tbl     string
	store   *postgres.Store
	slot    string // the WAL source's replication slot (and publication), once created
	writer  enqueuer
	version string
}

var _ database = (*postgresDB)(nil)

func (p *postgresDB) setup(ctx context.Context) error {
	if err := checkID(p.id); err != nil {
		return err
	}
	pcfg, err := pgxpool.ParseConfig(p.cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("parsing the database URL: %w", err)
	}
	pcfg.ConnConfig.RuntimeParams["application_name"] = "outbox_chaos_" + p.id
	pcfg.MaxConns = int32(p.cfg.Producers + 4)
	if p.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	if err := p.pool.QueryRow(ctx, `SHOW server_version`).Scan(&p.version); err != nil {
		return fmt.Errorf("connecting to PostgreSQL (is it running?): %w", err)
	}
	schema := "chaos_" + p.id
	if _, err := p.pool.Exec(ctx, `CREATE SCHEMA `+schema); err != nil {
		return fmt.Errorf("creating the schema: %w", err)
	}
	p.schema = schema
	p.tbl = schema + ".outbox"
	if p.store, err = postgres.New(ctx, postgres.Config{Pool: p.pool, Table: p.tbl}); err != nil {
		return err
	}
	if _, err := p.store.MigrateUp(ctx); err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	if p.cfg.wal() {
		if err := p.setupSlot(ctx); err != nil {
			return err
		}
	}
	if p.writer == nil {
		w, err := outbox.NewWriter(outbox.WriterConfig{Dialect: outbox.Postgres, Table: p.tbl})
		if err != nil {
			return err
		}
		p.writer = w
	}
	if _, err := p.pool.Exec(ctx, `CREATE TABLE `+schema+`.chaos_orders (
		idx bigint PRIMARY KEY, message_id uuid NOT NULL, key text NOT NULL, seq integer NOT NULL)`); err != nil {
		return fmt.Errorf("creating the business table: %w", err)
	}
	return nil
}

// setupSlot creates the WAL source's publication and slot before anything is produced (what
// commits before the slot exists is not in its stream), as `outbox migrate up --source wal`
// does.
func (p *postgresDB) setupSlot(ctx context.Context) error {
	mode := wal.ModeTable
	if p.cfg.Source == SourceWALLogical {
		mode = wal.ModeLogical
	}
	// The slot's name is also the logical messages' prefix: logical messages are
	// database-wide, and other outboxes in the database must not reach this run's relays.
	slot := "outbox_chaos_" + p.id
	if mode == wal.ModeLogical {
		lw, err := outbox.NewLogicalWriter(outbox.LogicalWriterConfig{Prefix: slot})
		if err != nil {
			return err
		}
		p.writer = lw // the producers write logical messages instead of rows
	}
	src, err := wal.New(wal.Config{ConnString: p.cfg.DatabaseURL, Pool: p.pool, Mode: mode, Table: p.tbl,
		SlotName: slot, MessagePrefix: slot, Logger: p.log})
	if err != nil {
		return err
	}
	p.slot = slot // close drops it even when Setup fails halfway
	if err := src.Setup(ctx); err != nil {
		return fmt.Errorf("creating the replication slot: %w", err)
	}
	return nil
}

func (p *postgresDB) addr() (string, error) { return hostPort(p.cfg.DatabaseURL, "5432") }

func (p *postgresDB) table() string { return p.tbl }

// appPrefix starts the application_name of the relays' sessions (then r<relay>) and of the
// consumers' (c<process>); the checker's own is outbox_chaos_<id>.
func (p *postgresDB) appPrefix() string { return "outbox_chaos_" + p.id + "_" }

func (p *postgresDB) relayEnv(proxyAddr string) (func(i int) []string, error) {
	u, err := throughProxy(p.cfg.DatabaseURL, proxyAddr)
	if err != nil {
		return nil, err
	}
	var source []string
	if p.cfg.wal() {
		mode := "table"
		if p.cfg.Source == SourceWALLogical {
			mode = "logical"
		}
		source = []string{"OUTBOX_SOURCE=wal", "OUTBOX_WAL_SLOT=" + p.slot, "OUTBOX_WAL_MODE=" + mode,
			"OUTBOX_WAL_MESSAGE_PREFIX=" + p.slot, "OUTBOX_WAL_BATCH_SIZE=500"}
	}
	return func(i int) []string {
		u := *u
		q := u.Query()
		q.Set("application_name", p.appPrefix()+"r"+strconv.Itoa(i))
		u.RawQuery = q.Encode()
		return append([]string{"OUTBOX_DATABASE_URL=" + u.String()}, source...)
	}, nil
}

// relaysUp: with the WAL source, one relay reads the slot; with the poll source, every relay
// has registered in the membership table.
func (p *postgresDB) relaysUp(ctx context.Context, n int) (bool, string, error) {
	if p.cfg.wal() {
		st, err := wal.Slot(ctx, p.pool, p.slot)
		return err == nil && st.Active, fmt.Sprintf("slot %s: %+v", p.slot, st), err
	}
	st, err := p.store.Stats(ctx)
	return err == nil && st.Relays >= n, fmt.Sprintf("%d of %d relays registered", st.Relays, n), err
}

func (p *postgresDB) begin(ctx context.Context) (producerTx, error) {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &pgTx{tx: tx, writer: p.writer, orders: p.schema + ".chaos_orders"}, nil
}

// pgTx is a producer's transaction on PostgreSQL.
type pgTx struct {
	tx     pgx.Tx
	writer enqueuer
	orders string
}

func (t *pgTx) write(ctx context.Context, o orders, msgs []outbox.Message) error {
	if _, err := t.tx.Exec(ctx, `INSERT INTO `+t.orders+` (idx, message_id, key, seq)
		SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::int[])`, o.idx, o.ids, o.keys, o.seqs); err != nil {
		return fmt.Errorf("inserting business rows: %w", err)
	}
	return t.writer.Enqueue(ctx, t.tx, msgs...)
}

func (t *pgTx) commit(ctx context.Context) error { return t.tx.Commit(ctx) }

func (t *pgTx) rollback(ctx context.Context) error {
	if err := t.tx.Rollback(ctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return err
	}
	return nil
}

// terminateRelays ends the sessions whose application_name is a relay's or a consumer's.
func (p *postgresDB) terminateRelays(ctx context.Context) (int, error) {
	var n int
	err := p.pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE starts_with(application_name, $1)`, p.appPrefix()).Scan(&n)
	return n, err
}

// majorVersion returns the server's major version, for pg_ctlcluster.
func (p *postgresDB) majorVersion(ctx context.Context) (int, error) {
	var num int
	if err := p.pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&num); err != nil {
		return 0, err
	}
	return num / 10000, nil
}

func (p *postgresDB) committed(ctx context.Context) ([]int64, error) {
	rows, err := p.pool.Query(ctx, `SELECT idx FROM `+p.schema+`.chaos_orders`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

func (p *postgresDB) lookup(ctx context.Context, ids []string) (map[string]LostMessage, error) {
	out := map[string]LostMessage{}
	for _, q := range []struct{ where, query string }{
		{"outbox", `SELECT message_id::text, id, attempts, coalesce(last_error, ''), available_at
			FROM ` + p.tbl + ` WHERE message_id = ANY($1::uuid[])`},
		{"dead_letters", `SELECT message_id::text, original_id, attempts, last_error, failed_at
			FROM ` + p.tbl + `_dead WHERE message_id = ANY($1::uuid[])`},
	} {
		rows, err := p.pool.Query(ctx, q.query, ids)
		if err != nil {
			return out, err
		}
		err = collectLost(rows, q.where, out)
		rows.Close()
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func (p *postgresDB) stats(ctx context.Context) (dialect.Stats, error) { return p.store.Stats(ctx) }

func (p *postgresDB) notes(relayIDs string) []string {
	source := "poll source, LISTEN/NOTIFY, " + relayIDs
	if p.cfg.wal() {
		source = fmt.Sprintf("%s source on slot %s: one reads, the others wait as hot standbys", p.cfg.Source, p.slot)
	}
	return []string{
		fmt.Sprintf("database: PostgreSQL %s, schema %s; db-terminate = pg_terminate_backend of the relays' (and consumers') sessions (by application_name)", p.version, p.schema),
		"source: " + source,
	}
}

func (p *postgresDB) close(keep bool) []string {
	if p.pool == nil {
		return nil
	}
	defer p.pool.Close()
	var notes []string
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if p.slot != "" {
		// Always: a slot left behind would pin WAL on the server.
		if err := wal.DropSlot(ctx, p.pool, p.slot, 10*time.Second); err != nil {
			p.log.Warn("dropping the replication slot", slog.String("slot", p.slot), slog.Any("error", err))
			notes = append(notes, fmt.Sprintf("replication slot %s could not be dropped: %v; drop it: SELECT pg_drop_replication_slot('%s')", p.slot, err, p.slot))
		}
		if _, err := p.pool.Exec(ctx, `DROP PUBLICATION IF EXISTS `+p.slot); err != nil {
			p.log.Warn("dropping the publication", slog.String("publication", p.slot), slog.Any("error", err))
		}
	}
	switch {
	case p.schema == "":
	case keep:
		notes = append(notes, "schema kept for inspection: "+p.schema+" (DROP SCHEMA "+p.schema+" CASCADE when done)")
	default:
		if _, err := p.pool.Exec(ctx, `DROP SCHEMA `+p.schema+` CASCADE`); err != nil {
			p.log.Warn("dropping the schema", slog.String("schema", p.schema), slog.Any("error", err))
		}
	}
	return notes
}

// throughProxy returns the PostgreSQL URL with its host replaced by addr.
func throughProxy(raw, addr string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("the database URL must be a postgres:// URL, got %q", redact(raw))
	}
	u.Host = addr
	return u, nil
}

// hostileClasses are PostgreSQL's hostile rows: values its column types accept that no relay
// can read (infinite times, attempts out of range), headers the sinks refuse, and headers
// with non-string values. {t} stands for the outbox table; the placeholders are message_id,
// key, payload and headers.
func (p *postgresDB) hostileClasses() []hostileClass {
	insert := func(col, val string) string {
		return `INSERT INTO {t} (message_id, topic, key, payload, headers` + col + `)
			VALUES ($1::uuid, '` + outboxTopic + `', $2, $3, $4::jsonb` + val + `)`
	}
	dead := func(name, column, value string) hostileClass {
		return hostileClass{name: name, fate: FateDead, reason: column, insert: insert(", "+column, ", "+value)}
	}
	availableAt := dead("available-at-infinity", "available_at", "'infinity'")
	if p.cfg.wal() {
		// The WAL source publishes at commit and reads no available_at: the row is sent.
		availableAt.fate, availableAt.reason = FateDelivered, ""
	}
	cs := []hostileClass{
		dead("created-at-infinity", "created_at", "'infinity'"),
		dead("created-at-minus-infinity", "created_at", "'-infinity'"),
		availableAt,
		dead("attempts-negative", "attempts", "-1"),
		dead("attempts-max", "attempts", "2147483647"),
		nonStringHeaders(insert("", "")),
	}
	return append(cs, headerClasses(insert("", ""))...)
}

func (p *postgresDB) insertHostile(ctx context.Context, c *hostileClass, id, key string, payload []byte) error {
	_, err := p.pool.Exec(ctx, strings.ReplaceAll(c.insert, "{t}", p.tbl), id, key, payload, cmpOr(c.headers, "{}"))
	return err
}

func (p *postgresDB) deadLetters(ctx context.Context) ([]deadLetter, error) {
	rows, err := p.pool.Query(ctx, `SELECT message_id::text, payload, last_error, attempts FROM `+p.tbl+`_dead`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (deadLetter, error) {
		var d deadLetter
		err := r.Scan(&d.messageID, &d.payload, &d.reason, &d.attempts)
		return d, err
	})
}

func (p *postgresDB) consumerTables() (string, string, string) {
	return p.schema + ".inbox", p.schema + ".chaos_effects", p.schema + ".chaos_counters"
}

func (p *postgresDB) setupConsumers(ctx context.Context) (*inbox.Inbox, error) {
	table, effects, counters := p.consumerTables()
	in, err := inbox.New(ctx, inbox.Config{Pool: p.pool, Table: table, Consumer: inboxConsumer, Logger: p.log})
	if err != nil {
		return nil, err
	}
	if _, err := in.MigrateUp(ctx); err != nil {
		return nil, fmt.Errorf("migrating the inbox: %w", err)
	}
	// No unique constraint on the effects: a message applied twice must show.
	for _, q := range []string{
		`CREATE TABLE ` + effects + ` (message_id text NOT NULL, key text NOT NULL, seq integer NOT NULL,
			apply bigint NOT NULL, process integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
		`CREATE TABLE ` + counters + ` (key text PRIMARY KEY, n bigint NOT NULL)`,
	} {
		if _, err := p.pool.Exec(ctx, q); err != nil {
			return nil, err
		}
	}
	return in, nil
}

func (p *postgresDB) consumerDB(proxyAddr string) (func(i int) (string, string), error) {
	u, err := throughProxy(p.cfg.DatabaseURL, proxyAddr)
	if err != nil {
		return nil, err
	}
	return func(i int) (string, string) {
		u := *u
		q := u.Query()
		q.Set("application_name", p.appPrefix()+"c"+strconv.Itoa(i))
		u.RawQuery = q.Encode()
		return string(outbox.Postgres), u.String()
	}, nil
}

func (p *postgresDB) effects(ctx context.Context) ([]effectRow, error) {
	_, effects, _ := p.consumerTables()
	rows, err := p.pool.Query(ctx, `SELECT message_id, key, seq, apply, process FROM `+effects)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (effectRow, error) {
		var e effectRow
		err := r.Scan(&e.messageID, &e.key, &e.seq, &e.apply, &e.process)
		return e, err
	})
}
