package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/cmd/outbox/internal/config"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/mysql"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/binlog"
)

// newBinlogSource is the MariaDB/MySQL binlog source over the open store.
func newBinlogSource(cfg config.Config, st dialect.Store, logger *slog.Logger) (relay.Source, []any, error) {
	my, ok := st.(*mysql.Store)
	if !ok {
		return nil, nil, &outbox.ConfigError{Field: "source", Reason: "binlog needs a MariaDB or MySQL database"}
	}
	db, err := cfg.Database()
	if err != nil {
		return nil, nil, err
	}
	bc := cfg.BinlogConfig()
	bc.DSN, bc.DB, bc.Logger = db.DSN, my.DB(), logger
	src, err := binlog.New(bc)
	if err != nil {
		return nil, nil, config.LibraryError("binlog", "binlog.", err)
	}
	return src, []any{slog.String("name", binlogName(cfg)), slog.Int("workers", cfg.Binlog.Workers)}, nil
}

// setupBinlog saves the server's current binlog position as the source's starting point
// when it has none.
func (a *app) setupBinlog(ctx context.Context, cfg config.Config, st dialect.Migrator) error {
	my, ok := st.(*mysql.Store)
	if !ok {
		return &outbox.ConfigError{Field: "source", Reason: "binlog needs a MariaDB or MySQL database"}
	}
	src, _, err := newBinlogSource(cfg, my, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	if err := src.(*binlog.Source).Setup(ctx); err != nil {
		return err
	}
	pos, _, err := binlog.ReadPosition(ctx, my.DB(), cfg.Table, binlogName(cfg))
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "binlog source %s starts at %s\n", binlogName(cfg), positionJS{GTID: pos.GTID, File: pos.File, Pos: pos.Pos})
	return nil
}

// binlogName is the binlog source's name: binlog.name, else the table's.
func binlogName(cfg config.Config) string {
	if cfg.Binlog.Name != "" {
		return cfg.Binlog.Name
	}
	return cfg.Table
}

// binlogStatus reads the position the binlog relays saved and the server's current one.
func binlogStatus(ctx context.Context, cfg config.Config, st dialect.Admin) (*binlogJSON, error) {
	my, ok := st.(*mysql.Store)
	if !ok {
		return nil, nil // config validation refuses binlog elsewhere
	}
	b := &binlogJSON{Name: binlogName(cfg)}
	saved, found, err := binlog.ReadPosition(ctx, my.DB(), cfg.Table, b.Name)
	if err != nil {
		return nil, err
	}
	if found {
		b.Saved = true
		b.Position = positionJS{GTID: saved.GTID, File: saved.File, Pos: saved.Pos}
		if !saved.UpdatedAt.IsZero() {
			b.SavedAgeMs = time.Since(saved.UpdatedAt).Milliseconds()
		}
	}
	server, err := binlog.ServerPosition(ctx, my.DB())
	if err != nil {
		return nil, err
	}
	b.Server = positionJS{GTID: server.GTID, File: server.File, Pos: server.Pos}
	return b, nil
}
