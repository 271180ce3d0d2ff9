package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outboxgo/outbox/sink"
)

type demoOptions struct {
	duration  time.Duration
	grace     time.Duration
	dir       string
	natsURL   string
	dbURL     string
	schema    string
	customers int
	rate      int
	seed      uint64
	watch     bool
	inProcess bool
	quiet     bool
	verbose   bool
}

// printer serialises the demo's output.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	var o demoOptions
	fs := flag.NewFlagSet("notification", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.duration, "duration", 8*time.Second, "how long to make status changes")
	fs.DurationVar(&o.grace, "grace", 20*time.Second, "how long to wait, after the last change, for the last notifications")
	fs.StringVar(&o.dir, "dir", "", "keep the SQLite files and the NATS store here (default: a temporary directory, removed at exit)")
	fs.StringVar(&o.natsURL, "nats-url", "", "a NATS server with JetStream, e.g. nats://127.0.0.1:4222 (default: an embedded one)")
	fs.StringVar(&o.dbURL, "database-url", "", "keep the tables in PostgreSQL, e.g. postgres://postgres@127.0.0.1:5432/test (default: SQLite files)")
	fs.StringVar(&o.schema, "schema", DefaultSchema, "with --database-url: the schema of the example's tables")
	fs.IntVar(&o.customers, "customers", 12, "customers, each placing one order")
	fs.IntVar(&o.rate, "rate", 10, "status changes per second")
	fs.Uint64Var(&o.seed, "seed", uint64(time.Now().UnixNano()), "seed of the customers' channel choices and of the changes")
	fs.BoolVar(&o.watch, "watch", false, "print what each channel has sent every second")
	fs.BoolVar(&o.inProcess, "in-process", false, "run the channel publishers in this process, not as processes of their own (and kill none)")
	fs.BoolVar(&o.quiet, "quiet", false, "print only the set-up, the faults and the summary")
	fs.BoolVar(&o.verbose, "verbose", false, "show the relays' and the inbox's logs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (the subcommand is publisher)", fs.Arg(0))
	}
	if o.customers < 2 || o.rate < 1 || o.duration <= 0 {
		return errors.New("--customers must be at least 2, --rate at least 1 and --duration positive")
	}
	out := &printer{w: stdout}
	level := slog.LevelError
	if o.verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "notification-example-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}

	sms, err := StartProvider("sms")
	if err != nil {
		return err
	}
	defer sms.Close()
	voice, err := StartProvider("voice")
	if err != nil {
		return err
	}
	defer voice.Close()
	mail, err := StartMailServer("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer mail.Stop()
	// The stand-ins fail on demand: the SMS provider loses some answers (the resend is a
	// duplicate it dedupes), refuses some requests, and throttles.
	sms.SetFaults(Faults{Before500: 0.05, After500: 0.05, TooMany: 0.02})
	voice.SetFaults(Faults{After500: 0.05})
	recipients := []Recipient{sms, mail, voice}

	storage := Storage{Dir: dir, URL: o.dbURL, Schema: o.schema}
	sys, err := StartSystem(ctx, SystemConfig{Storage: storage, NATSURL: o.natsURL, Logger: logger})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, sys.Close()) }() // cancels the publishers, then waits

	// The channel publishers: processes of their own (the sms one is killed with SIGKILL
	// halfway and restarted), or goroutines with --in-process.
	var procs map[string]*Supervised
	if o.inProcess {
		sinks := map[string]sink.Sink{
			"sms":   NewProviderSink(sms.URL()),
			"email": NewEmailSink(mail.Addr()),
			"voice": NewProviderSink(voice.URL()),
		}
		for _, ch := range DefaultChannels {
			sys.Go("publisher "+ch, func(ctx context.Context) error {
				return RunPublisher(ctx, PublisherConfig{Storage: storage, Channel: ch, Sink: sinks[ch], Logger: logger})
			})
		}
	} else {
		target := map[string][]string{
			"sms": {"--provider-url", sms.URL()}, "email": {"--smtp", mail.Addr()}, "voice": {"--provider-url", voice.URL()},
		}
		pubCtx, stopPubs := context.WithCancel(context.WithoutCancel(ctx))
		procs = map[string]*Supervised{}
		defer func() { // before sys.Close: stop the publishers, then wait for them
			stopPubs()
			for _, p := range procs {
				err = errors.Join(err, p.Wait(15*time.Second))
			}
		}()
		for _, ch := range DefaultChannels {
			args := append(sys.PublisherArgs(), "--channel", ch)
			args = append(args, "--log-level", level.String())
			p, err := Supervise(pubCtx, ch, append(args, target[ch]...), out, stderr)
			if err != nil {
				return err
			}
			procs[ch] = p
		}
	}

	changes := int(o.duration.Seconds() * float64(o.rate))
	out.printf(`notification service: customers choose how to hear about their order; every status change reaches each chosen channel once

  order service         %s; a status change and its %s event commit in ONE transaction
  order relay           outbox → NATS JetStream %s, stream %s
  notification service  consumes %s through the inbox (%s); in the inbox's transaction it stores
                        the notification and one %s row per chosen channel (notify.sms, notify.email, notify.voice)
  subscription service  %s: POST /subscribe, POST /unsubscribe
  publishers            one relay per channel, restricted to its topic:
                          sms   → provider stand-in %s (dedupes by Idempotency-Key; fails 12%% of requests)
                          email → SMTP server %s (stores each Message-ID once; cut for 2s mid-run)
                          voice → provider stand-in %s (loses 5%% of its answers)
                        %s

%d customers, %d status changes at %d/s.

`, storage.Where("orders"), StatusTopic, sys.NATSURL, sys.Stream, StatusTopic, storage.Where("notify"), NotifyTable, sys.SubsURL, sms.URL(), mail.Addr(), voice.URL(), describeProcs(procs), o.customers, changes, o.rate)

	if !o.quiet {
		for _, r := range []interface{ OnDeliver(func(Delivery)) }{sms, mail, voice} {
			r.OnDeliver(func(d Delivery) { out.printf("  > %-6s %-20s %s\n", d.Channel, d.To, d.Body) })
		}
	}
	started := time.Now()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	if o.watch {
		go watch(watchCtx, out, started, sys, recipients)
	}

	ledger := NewLedger()
	var cutDone chan struct{}
	say := func(format string, args ...any) {
		if !o.quiet {
			out.printf("  "+format, args...)
		}
	}
	driveErr := Drive(ctx, sys, ledger, DriveConfig{
		Customers: o.customers, Changes: changes, Rate: o.rate, Channels: DefaultChannels,
		UnsubscribeFirst: 1, UnsubscribeMid: 1, Seed: o.seed, Say: say, Run: strconv.FormatInt(time.Now().Unix()%100000, 36),
		Progress: func(i int) {
			if i == changes/2 && procs != nil {
				out.printf("\n  !! kill -9 publisher sms (pid %d): its messages wait in %s, the other channels flow\n\n", procs["sms"].Pid(), NotifyTable)
				if err := procs["sms"].Kill(); err != nil {
					out.printf("  killing: %v\n", err)
				}
			}
			if i != changes/3 {
				return
			}
			out.printf("\n  !! SMTP server cut (listener and connections closed) for 2s: the email publisher pauses and probes\n\n")
			mail.Stop()
			cutDone = make(chan struct{})
			go func() {
				defer close(cutDone)
				time.Sleep(2 * time.Second)
				if err := mail.Start(); err != nil {
					out.printf("  restarting the SMTP server: %v\n", err)
					return
				}
				out.printf("\n  !! SMTP server back on %s: email resumes\n\n", mail.Addr())
			}()
		},
	})
	if cutDone != nil {
		<-cutDone
	}
	if driveErr != nil {
		return driveErr
	}
	out.printf("\nAll changes committed; waiting up to %s for the last notifications...\n", o.grace)
	waitFor(ctx, o.grace, func() bool {
		p, err := sys.Pending(ctx)
		return err == nil && len(p) == 0 && ledger.Check(AllDeliveries(recipients...)).Missing == 0
	})
	stopWatch()
	rep := ledger.Check(AllDeliveries(recipients...))
	dead, _ := sys.Dead(context.WithoutCancel(ctx))
	out.printf("\nSummary (%s)\n", time.Since(started).Round(100*time.Millisecond))
	for _, r := range recipients {
		st := r.Stats()
		out.printf("  %-6s %4d delivered, %3d duplicate(s) seen and deduped by the receiver, %4d requests\n", st.Channel, st.Delivered, st.Duplicates, st.Requests)
	}
	out.printf("  owed %d notifications (status changes × chosen channels); missing %d, delivered twice %d, unwanted %d; dead letters %d\n",
		rep.Expected, rep.Missing, rep.Doubles, rep.Unwanted, dead)
	for _, p := range rep.Problems {
		out.printf("  problem: %s\n", p)
	}
	if err := sys.Err(); err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("%d missing, %d doubled, %d unwanted notifications", rep.Missing, rep.Doubles, rep.Unwanted)
	}
	out.printf("  OK: every subscriber got each notification once per chosen channel, nothing else\n")
	return nil
}

// watch prints what each channel has sent, every second, until ctx ends.
func watch(ctx context.Context, out *printer, started time.Time, sys *System, rs []Recipient) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		parts := make([]string, 0, len(rs))
		for _, r := range rs {
			st := r.Stats()
			parts = append(parts, fmt.Sprintf("%s %d sent (%d dup)", st.Channel, st.Delivered, st.Duplicates))
		}
		pending, _ := sys.Pending(ctx)
		topics := make([]string, 0, len(pending))
		for t, n := range pending {
			topics = append(topics, fmt.Sprintf("%s=%d", t, n))
		}
		sort.Strings(topics)
		if len(topics) == 0 {
			topics = append(topics, "none")
		}
		out.printf("[watch %3.0fs] %s | pending: %s\n", time.Since(started).Seconds(), strings.Join(parts, " | "), strings.Join(topics, " "))
	}
}

func describeProcs(procs map[string]*Supervised) string {
	if procs == nil {
		return "(in this process: --in-process)"
	}
	parts := make([]string, 0, len(procs))
	for _, ch := range DefaultChannels {
		parts = append(parts, fmt.Sprintf("%s pid %d", ch, procs[ch].Pid()))
	}
	return "each a process of its own: " + strings.Join(parts, ", ") + " (sms is killed with SIGKILL halfway)"
}
