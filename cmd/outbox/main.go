// Command outbox runs and operates a transactional outbox: the relay daemon, migrations, status,
// dead letters, one-off enqueues, and a self-contained quickstart.
//
// Exit codes: 0 success, 1 failure, 2 invalid usage or configuration, 3 unhealthy (outbox
// status with --max-retrying, --max-dead or --max-age).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/cmd/outbox/internal/config"
	"github.com/outboxgo/outbox/dialect"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	// exitUnhealthy is outbox status's answer when a threshold it was given is exceeded.
	exitUnhealthy = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, restore the default behaviour: a second Ctrl-C kills at once.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the exit code. The process environment and
// stdin are used; tests call (*app).run to pass their own.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdin: os.Stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv, environ: os.Environ}
	return a.run(ctx, args)
}

// app is one invocation: its streams and environment.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// environ lists the environment (KEY=value), to refuse unknown OUTBOX_* variables; nil
	// skips that check.
	environ func() []string
	// openStore opens the store of the commands that read it (status, dlq, migrate,
	// enqueue); nil means the configured database (openStore). Tests pass fakes.
	openStore func(ctx context.Context, cfg config.Config, logger *slog.Logger, create bool) (dialect.Store, error)
	// progressInterval is the least time between two progress lines off a terminal; 0 means
	// progress.DefaultInterval, less than 0 a line at every step. Tests set it.
	progressInterval time.Duration

	// started is set once a command's own code runs: errors before it (unknown command or
	// flag, wrong arguments) are usage errors.
	started bool
}

// usageError is a command line the command cannot act on; it exits with exitUsage.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// exitError ends the command with a given code after the command printed what it had to.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func (a *app) run(ctx context.Context, args []string) int {
	root := a.newRoot()
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var (
		ue *usageError
		ee *exitError
	)
	// Errors may quote row data, driver messages and settings: never let them carry a
	// secret or a terminal escape to the screen.
	msg := safeText(err.Error())
	switch {
	case errors.As(err, &ee):
		if ee.msg != "" {
			fmt.Fprintf(a.stderr, "outbox: %s\n", safeText(ee.msg))
		}
		return ee.code
	case errors.Is(err, outbox.ErrInvalidMessage):
		// ValidationError already reads "outbox: invalid message 0: <field> <reason>".
		fmt.Fprintln(a.stderr, msg)
		return exitUsage
	case errors.Is(err, outbox.ErrInvalidConfig):
		// ConfigError already reads "outbox: invalid configuration: <field>: <reason>".
		fmt.Fprintln(a.stderr, msg)
		if hint := settingHint(err); hint != "" {
			fmt.Fprintln(a.stderr, hint)
		}
		fmt.Fprintln(a.stderr, "See docs/configuration.md, or 'outbox --help', for the settings.")
		return exitUsage
	case errors.As(err, &ue) || !a.started:
		fmt.Fprintf(a.stderr, "outbox: %s\n", msg)
		if cmd != nil {
			fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
		return exitUsage
	default:
		fmt.Fprintf(a.stderr, "outbox: error: %s\n", msg)
		return exitFailure
	}
}

const rootLong = `outbox relays messages from a transactional outbox table to a message broker.

Services insert messages into the outbox table inside their own database transactions;
'outbox relay' publishes every committed message (at least once, in order per key) and
removes it once the broker acknowledged it.

Configuration comes from flags, then OUTBOX_* environment variables, then a YAML file
(--config or OUTBOX_CONFIG), then defaults. Every setting's env var and flag are named after
its YAML path: poll.batch_size is OUTBOX_POLL_BATCH_SIZE and --poll-batch-size.
See docs/configuration.md.

Try it without installing anything:  outbox quickstart`

func (a *app) newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "outbox",
		Short:         "Relay and operate a transactional outbox",
		Long:          rootLong,
		SilenceErrors: true,
		SilenceUsage:  true,
		Version:       versionText(debug.ReadBuildInfo()),
		PersistentPreRunE: func(*cobra.Command, []string) error {
			a.started = true
			return nil
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err: err} })
	root.PersistentFlags().String("config", "", "YAML configuration file (default $OUTBOX_CONFIG)")
	addSettingFlags(root.PersistentFlags(), globalSettings...)

	root.AddCommand(
		a.relayCmd(),
		a.migrateCmd(),
		a.statusCmd(),
		a.dlqCmd(),
		a.replayCmd(),
		a.pauseCmd(),
		a.resumeCmd(),
		a.inboxCmd(),
		a.enqueueCmd(),
		a.quickstartCmd(),
		a.versionCmd(),
	)
	return root
}

// noArgs refuses positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}
