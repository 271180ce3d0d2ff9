package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/cmd/outbox/internal/config"
	"github.com/outboxgo/outbox/dialect"
)

func (a *app) enqueueCmd() *cobra.Command {
	var (
		msg     outbox.Message
		headers []string
		data    string
		file    string

		ndjson      string
		batch, skip int
		noProgress  bool
	)
	cmd := &cobra.Command{
		Use:   "enqueue --topic T [--key K] [--type X] [--header k=v]... [--data S | --file PATH | < stdin] | --ndjson FILE",
		Short: "Enqueue one message and print its message_id, or a file of messages (--ndjson)",
		Long: `enqueue inserts one message into the outbox, in a transaction of its own, and prints its
message_id. It is for scripts, tests and repairs; services enqueue inside their business
transactions with the library, or with a plain INSERT.

The payload is --data, or the contents of --file, or else standard input.

With --ndjson FILE ('-' for standard input) it enqueues the messages of FILE instead, one
JSON object a line, in its order, --batch per transaction, with a progress bar on standard
error (plain lines when it is not a terminal; --no-progress for none):

  {"topic": "orders.created", "key": "order-42", "payload": {"id": "order-42"},
   "headers": {"content-type": "application/json"}}

The fields are topic (required), key, type, headers (an object of strings), id (the
message_id, a UUID; a new one when absent) and the payload: data (text, as --data),
payload (any JSON value, stored as written) or payload_base64 (bytes). Empty lines are
skipped. A line that is not a message stops it with an error naming the line and the
field: the batches before that line's are committed, nothing of its own; the error says how
many messages are, and through which line, so that, the line fixed, --skip LINES resumes
after them.`,
		Example: `  outbox enqueue --topic orders.created --key order-42 --data '{"id":"order-42"}' \
      --header content-type=application/json
  cat event.json | outbox enqueue --topic orders.created --key order-42
  outbox enqueue --ndjson backfill.ndjson --batch 5000
  outbox enqueue --ndjson backfill.ndjson --skip 2000   # resume after line 2000`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ndjson != "" {
				for _, name := range []string{"topic", "key", "type", "header", "data", "file"} {
					if cmd.Flags().Changed(name) {
						return usagef("--%s is for one message: with --ndjson each line gives its own", name)
					}
				}
				if batch < 1 || batch > 10000 {
					return usagef("--batch must be between 1 and 10000")
				}
				if skip < 0 {
					return usagef("--skip must not be negative")
				}
				return a.enqueueFile(cmd, ndjson, batch, skip, noProgress)
			}
			for _, name := range []string{"batch", "skip", "no-progress"} {
				if cmd.Flags().Changed(name) {
					return usagef("--%s goes with --ndjson", name)
				}
			}
			if msg.Topic == "" {
				return usagef("--topic is required")
			}
			if cmd.Flags().Changed("data") && file != "" {
				return usagef("use either --data or --file, not both")
			}
			for _, h := range headers {
				name, value, ok := strings.Cut(h, "=")
				if !ok || name == "" {
					return usagef("--header %q: want name=value", h)
				}
				if msg.Headers == nil {
					msg.Headers = map[string]string{}
				}
				msg.Headers[name] = value
			}
			payload, err := a.payload(cmd, data, file)
			if err != nil {
				return err
			}
			msg.Payload = payload
			msg.ID = outbox.NewID()
			return a.withAdmin(cmd, func(ctx context.Context, st dialect.Admin, _ config.Config) error {
				if err := st.Enqueue(ctx, msg); err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, msg.ID)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&msg.Topic, "topic", "", "routing destination: NATS subject (after sink.nats.subject_prefix), Kafka topic... (required)")
	f.StringVar(&msg.Key, "key", "", "ordering key, e.g. the aggregate id")
	f.StringVar(&msg.Type, "type", "", "event type (CloudEvents type); default the topic")
	f.StringArrayVar(&headers, "header", nil, "header name=value (repeatable)")
	f.StringVar(&data, "data", "", "payload text")
	f.StringVar(&file, "file", "", "read the payload from this file")
	f.StringVar(&ndjson, "ndjson", "", "enqueue the messages of this NDJSON `FILE` ('-' for stdin), one JSON object a line")
	f.IntVar(&batch, "batch", 1000, "with --ndjson, messages per transaction")
	f.IntVar(&skip, "skip", 0, "with --ndjson, skip the first `LINES` lines (to resume)")
	f.BoolVar(&noProgress, "no-progress", false, "with --ndjson, report no progress on standard error")
	return cmd
}

// enqueueFile is 'enqueue --ndjson path'.
func (a *app) enqueueFile(cmd *cobra.Command, path string, batch, skip int, noProgress bool) error {
	var (
		r     io.Reader = a.stdin
		total int64     // unknown on stdin
		name  = "standard input"
	)
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		defer f.Close()
		// Only a regular file can be read twice: a pipe or a FIFO (--ndjson <(zcat x.gz)) is
		// read once, its total unknown, as standard input.
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			if total, err = countNDJSON(path, skip); err != nil {
				return fmt.Errorf("reading %s: %w", path, err)
			}
		}
		r, name = f, path
	}
	return a.withAdmin(cmd, func(ctx context.Context, st dialect.Admin, _ config.Config) error {
		p := a.progress(noProgress, "enqueue", total)
		res, err := enqueueNDJSON(ctx, st, r, skip, batch, p.Add)
		p.Finish()
		if err != nil {
			if res.messages == 0 && skip == 0 {
				return fmt.Errorf("%s: %w (no message committed)", name, err)
			}
			fix := ""
			if le := (*lineError)(nil); errors.As(err, &le) {
				fix = "fix the line and "
			}
			return fmt.Errorf("%s: %w (%d message(s) committed, through line %d: %sresume with --skip %d)", name, err, res.messages, res.lastLine, fix, res.lastLine)
		}
		fmt.Fprintf(a.stdout, "enqueued %d message(s) from %s\n", res.messages, name)
		return nil
	})
}

// payload reads the message body from --data, --file or stdin, refusing more than the
// default payload limit without reading it all.
func (a *app) payload(cmd *cobra.Command, data, file string) ([]byte, error) {
	if cmd.Flags().Changed("data") {
		return []byte(data), nil
	}
	var r io.Reader
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("reading payload: %w", err)
		}
		defer f.Close()
		r = f
	} else {
		if f, ok := a.stdin.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				return nil, usagef("no payload: use --data, --file, or pipe it to standard input")
			}
		}
		r = a.stdin
	}
	b, err := io.ReadAll(io.LimitReader(r, outbox.DefaultMaxPayloadBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading payload: %w", err)
	}
	if len(b) > outbox.DefaultMaxPayloadBytes {
		return nil, fmt.Errorf("payload larger than %d bytes", outbox.DefaultMaxPayloadBytes)
	}
	return b, nil
}
