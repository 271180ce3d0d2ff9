package main

import (
	"context"
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
	)
	cmd := &cobra.Command{
		Use:   "enqueue --topic T [--key K] [--type X] [--header k=v]... [--data S | --file PATH | < stdin]",
		Short: "Enqueue one message in its own transaction and print its message_id",
		Long: `enqueue inserts one message into the outbox, in a transaction of its own, and prints its
message_id. It is for scripts, tests and repairs; services enqueue inside their business
transactions with the library, or with a plain INSERT.

The payload is --data, or the contents of --file, or else standard input.`,
		Example: `  outbox enqueue --topic orders.created --key order-42 --data '{"id":"order-42"}' \
      --header content-type=application/json
  cat event.json | outbox enqueue --topic orders.created --key order-42`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
	return cmd
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
