package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/cmd/outbox/internal/config"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/mysql"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/dialect/sqlite"
)

// globalSettings have flags on every command; the others only on relay.
var globalSettings = []string{"database_url", "table", "log.level", "log.format"}

// settingAnnotation marks a flag as the command-line layer of a configuration setting.
const settingAnnotation = "outbox_setting"

// settingValue is a flag holding a setting's raw text; config.Load parses it, so that flags,
// env vars and the YAML file share one parser and one error format.
type settingValue struct {
	kind  string
	value string
}

func (v *settingValue) String() string     { return v.value }
func (v *settingValue) Set(s string) error { v.value = s; return nil }
func (v *settingValue) Type() string       { return v.kind }

// addSettingFlags adds a flag for each setting path.
func addSettingFlags(fs *pflag.FlagSet, paths ...string) {
	for _, path := range paths {
		s, ok := config.Lookup(path)
		if !ok {
			panic("outbox: no setting " + path)
		}
		if s.YAMLOnly() {
			panic("outbox: setting " + path + " has no flag")
		}
		usage := s.Doc + " [" + s.Env + "]"
		f := fs.VarPF(&settingValue{kind: s.Kind, value: s.Default}, s.Flag, "", usage)
		if s.Kind == config.KindBool {
			f.NoOptDefVal = "true" // --poll-notify alone means true, as for other bool flags
		}
		_ = fs.SetAnnotation(s.Flag, settingAnnotation, []string{s.Path})
	}
}

// relaySettings are the settings that only the relay uses and that have a flag: all but the
// global ones and those of the YAML file only (maps, sinks, routes).
func relaySettings() []string {
	var out []string
	for _, s := range config.Settings() {
		if s.YAMLOnly() {
			continue
		}
		global := false
		for _, g := range globalSettings {
			global = global || g == s.Path
		}
		if !global {
			out = append(out, s.Path)
		}
	}
	return out
}

// loadConfig builds the configuration for cmd from its flags, the environment and the file.
func (a *app) loadConfig(cmd *cobra.Command) (config.Config, error) {
	flags := map[string]string{}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if path := f.Annotations[settingAnnotation]; len(path) == 1 {
			flags[path[0]] = f.Value.String()
		}
	})
	file, _ := cmd.Flags().GetString("config")
	opts := config.LoadOptions{File: file, Getenv: a.getenv, Flags: flags}
	if a.environ != nil {
		opts.Environ = a.environ()
	}
	return config.Load(opts)
}

// openStore opens the configured outbox store. Unless create is set, a missing SQLite file is
// an error instead of being created empty.
func openStore(ctx context.Context, cfg config.Config, logger *slog.Logger, create bool) (dialect.Store, error) {
	db, err := cfg.Database()
	if err != nil {
		return nil, err
	}
	switch db.Dialect {
	case outbox.Postgres:
		st, err := postgres.New(ctx, postgres.Config{URL: db.URL, Table: cfg.Table, Logger: logger})
		if err != nil {
			return nil, err
		}
		return st, nil
	case outbox.MySQL:
		st, err := mysql.New(ctx, mysql.Config{DSN: db.DSN, Table: cfg.Table, Logger: logger})
		if err != nil {
			return nil, err
		}
		return st, nil
	case outbox.SQLite:
		if !create {
			if _, err := os.Stat(db.Path); err != nil {
				return nil, fmt.Errorf("opening sqlite database: %w (run 'outbox migrate up' to create it)", err)
			}
		}
		st, err := sqlite.New(ctx, sqlite.Config{Path: db.Path, Table: cfg.Table, Logger: logger})
		if err != nil {
			return nil, err
		}
		return st, nil
	default:
		return nil, &outbox.ConfigError{Field: "database_url", Reason: "unsupported dialect " + string(db.Dialect)}
	}
}

// withMigrateHint adds a hint to errors that say the outbox tables are missing.
func withMigrateHint(err error) error {
	if err == nil {
		return nil
	}
	if missingTables(err) {
		return fmt.Errorf("%w (have the tables been created? run 'outbox migrate up')", err)
	}
	return err
}

// missingTables reports whether err says a table does not exist, in any dialect's words.
func missingTables(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "does not exist") || strings.Contains(msg, "doesn't exist") || strings.Contains(msg, "no such table")
}

// withStore loads the configuration, opens the store, runs fn and closes the store.
func (a *app) withStore(cmd *cobra.Command, fn func(ctx context.Context, st dialect.Store, cfg config.Config) error) error {
	return a.withStoreCreate(cmd, false, fn)
}

// withAdmin is withStore for the commands that read and repair the outbox (status, dlq,
// enqueue): they use only its admin surface.
func (a *app) withAdmin(cmd *cobra.Command, fn func(ctx context.Context, st dialect.Admin, cfg config.Config) error) error {
	return a.withStore(cmd, func(ctx context.Context, st dialect.Store, cfg config.Config) error { return fn(ctx, st, cfg) })
}

// withMigrator is withStoreCreate for the migrate commands: they use only the store's
// migrator (and migrate up the concrete store, to set up a log source).
func (a *app) withMigrator(cmd *cobra.Command, create bool, fn func(ctx context.Context, st dialect.Migrator, cfg config.Config) error) error {
	return a.withStoreCreate(cmd, create, func(ctx context.Context, st dialect.Store, cfg config.Config) error { return fn(ctx, st, cfg) })
}

func (a *app) withStoreCreate(cmd *cobra.Command, create bool, fn func(ctx context.Context, st dialect.Store, cfg config.Config) error) error {
	cfg, err := a.loadConfig(cmd)
	if err != nil {
		return err
	}
	// Commands other than relay print their answer; routine logs would only clutter it.
	if cfg.Log.Level == "info" {
		cfg.Log.Level = "warn"
	}
	logger := newLogger(cfg.Log, a.stderr)
	ctx := cmd.Context()
	open := a.openStore
	if open == nil {
		open = openStore
	}
	st, err := open(ctx, cfg, logger, create)
	if err != nil {
		return err
	}
	defer st.Close()
	return withMigrateHint(fn(ctx, st, cfg))
}

// settingHint says how to set the setting a configuration error names, when it has a flag:
// "set it with --sink-nats-stream, OUTBOX_SINK_NATS_STREAM or sink.nats.stream in the YAML
// file". Settings of named sinks (sinks.NAME.…) are set in the YAML file only.
func settingHint(err error) string {
	var ce *outbox.ConfigError
	if !errors.As(err, &ce) {
		return ""
	}
	s, ok := config.Lookup(ce.Field)
	if !ok || s.YAMLOnly() {
		return ""
	}
	return fmt.Sprintf("Set it with --%s, %s or %s in the YAML file.", s.Flag, s.Env, s.Path)
}
