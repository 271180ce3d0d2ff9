package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	natsgo "github.com/nats-io/nats.go"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
	"github.com/outboxgo/outbox/relay/wal"
	"github.com/outboxgo/outbox/sink"
	natssink "github.com/outboxgo/outbox/sink/nats"
)

// The relay role. Protocol with the orchestrator: the relay connects and prints "ready", waits
// for a line on stdin, then relays until stdin closes (or a signal), shuts down and exits.

func runRelay(ctx context.Context, o options) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	slog.SetDefault(logger)
	counts := &publishCounts{m: map[string]int64{}}
	var run func(ctx context.Context) error
	switch o.kind {
	case kindOutbox:
		store, err := postgres.New(ctx, postgres.Config{URL: o.databaseURL, Table: o.schema + ".outbox", Logger: logger, AsyncCommit: o.asyncCommit})
		if err != nil {
			return err
		}
		defer store.Close()
		if err := store.Pool().Ping(ctx); err != nil {
			return err
		}
		src, err := poll.New(poll.Config{Store: store, PollInterval: o.poll, DisableNotify: !o.notify,
			BatchSize: o.batch, Workers: o.workers, Logger: logger})
		if err != nil {
			return err
		}
		sk, err := natssink.New(ctx, natssink.Config{URL: o.natsURL, Name: "sidebyside-outbox", SubjectPrefix: o.prefix, Logger: logger})
		if err != nil {
			return err
		}
		defer sk.Close()
		r, err := relay.New(relay.Config{Source: src, Sink: &countingSink{Sink: sk, counts: counts}, Logger: logger})
		if err != nil {
			return err
		}
		run = r.Run
	case kindOutboxWAL:
		pool, err := pgxpool.New(ctx, o.databaseURL)
		if err != nil {
			return err
		}
		defer pool.Close()
		if err := pool.Ping(ctx); err != nil {
			return err
		}
		s := &system{Kind: kindOutboxWAL, WALMode: wal.Mode(o.walMode), Schema: o.schema, Slot: o.slot, LogicalPrefix: o.logicalPrefix}
		src, err := s.walSource(o.databaseURL, pool, o.batch, o.workers, logger)
		if err != nil {
			return err
		}
		sk, err := natssink.New(ctx, natssink.Config{URL: o.natsURL, Name: "sidebyside-outbox-wal", SubjectPrefix: o.prefix, Logger: logger})
		if err != nil {
			return err
		}
		defer sk.Close()
		r, err := relay.New(relay.Config{Source: src, Sink: &countingSink{Sink: sk, counts: counts}, Logger: logger})
		if err != nil {
			return err
		}
		// The WAL source's Run (replication stream, heartbeats) runs inside the relay's.
		run = r.Run
	case kindWMOffsets, kindWMQueue:
		wlog := errorLogger{logger}
		pool, err := pgxpool.New(ctx, o.databaseURL)
		if err != nil {
			return err
		}
		defer pool.Close()
		if err := pool.Ping(ctx); err != nil {
			return err
		}
		schema, offsets := adapters(o.kind, o.schema, o.batch)
		sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromPgx(pool), wmsql.SubscriberConfig{
			SchemaAdapter:  schema,
			OffsetsAdapter: offsets,
			PollInterval:   o.poll,
		}, wlog)
		if err != nil {
			return err
		}
		pub, err := wmnats.NewPublisher(wmnats.PublisherConfig{
			URL:         o.natsURL,
			NatsOptions: []natsgo.Option{natsgo.Name("sidebyside-watermill")},
			Marshaler:   &wmnats.NATSMarshaler{},
			JetStream:   wmnats.JetStreamConfig{TrackMsgId: true},
		}, wlog)
		if err != nil {
			return err
		}
		defer pub.Close()
		fwd, err := forwarder.NewForwarder(sub, &countingPublisher{Publisher: pub, prefix: o.prefix, counts: counts}, wlog, forwarder.Config{ForwarderTopic: wmTopic, CloseTimeout: 10 * time.Second})
		if err != nil {
			return err
		}
		run = func(ctx context.Context) error {
			done := make(chan error, 1)
			go func() { done <- fwd.Run(context.WithoutCancel(ctx)) }()
			select {
			case err := <-done:
				return err
			case <-ctx.Done():
			}
			if err := fwd.Close(); err != nil {
				return err
			}
			return <-done
		}
	default:
		return fmt.Errorf("--kind: unknown %q", o.kind)
	}

	fmt.Println("ready")
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		return nil // the orchestrator went away before the start
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, in) // returns at EOF: time to stop
		cancel()
	}()
	if path := os.Getenv("SIDEBYSIDE_CPUPROFILE"); path != "" { // for looking into a relay
		f, err := os.Create(fmt.Sprintf("%s.%s.%d", path, o.kind, os.Getpid()))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	err := run(ctx)
	raw, _ := json.Marshal(counts.snapshot())
	fmt.Printf("published %s\n", raw)
	return err
}

// publishCounts counts the messages a relay had acknowledged by the broker, per topic
// (workload), so that re-sends across relay restarts show even though JetStream's dedupe
// window hides them from consumers.
type publishCounts struct {
	mu sync.Mutex
	m  map[string]int64
}

func (c *publishCounts) add(topic string, n int64) {
	c.mu.Lock()
	c.m[topic] += n
	c.mu.Unlock()
}

func (c *publishCounts) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.m)
}

type countingSink struct {
	sink.Sink
	counts *publishCounts
}

func (s *countingSink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	res := s.Sink.Publish(ctx, msgs)
	for i, err := range res {
		if err == nil {
			s.counts.add(msgs[i].Topic, 1)
		}
	}
	return res
}

type countingPublisher struct {
	message.Publisher
	prefix string
	counts *publishCounts
}

// Publish counts like Watermill's publisher works: messages one by one, stopping at the
// first failure, so only a fully successful call is sure to have sent all of them.
func (p *countingPublisher) Publish(topic string, msgs ...*message.Message) error {
	err := p.Publisher.Publish(topic, msgs...)
	if err == nil {
		p.counts.add(strings.TrimPrefix(topic, p.prefix), int64(len(msgs)))
	}
	return err
}

// errorLogger passes Watermill's errors to slog and drops everything else before any
// formatting, so logging costs Watermill nothing on the hot path (its slog adapter builds
// attributes before slog checks the level).
type errorLogger struct{ l *slog.Logger }

func (e errorLogger) Error(msg string, err error, fields watermill.LogFields) {
	e.l.Error(msg, slog.Any("error", err), slog.Any("fields", fields))
}
func (errorLogger) Info(string, watermill.LogFields)                   {}
func (errorLogger) Debug(string, watermill.LogFields)                  {}
func (errorLogger) Trace(string, watermill.LogFields)                  {}
func (e errorLogger) With(watermill.LogFields) watermill.LoggerAdapter { return e }

// relayProc is a relay process started by the orchestrator.
type relayProc struct {
	cmd       *exec.Cmd
	stdin     io.WriteCloser
	cpu0      float64
	t0        time.Time
	published chan map[string]int64 // what the relay reported at exit

	stopOnce  sync.Once
	stopErr   error
	counts    map[string]int64
	accounted bool // added to the system's sent counts
}

// startRelay starts a relay process for s and waits until it is connected.
func startRelay(o options, s *system) (*relayProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "--role", "relay", "--kind", s.Kind,
		"--database-url", o.databaseURL, "--nats-url", o.natsURL,
		"--schema", s.Schema, "--subject-prefix", s.Prefix,
		"--poll", s.Poll.String(), "--notify="+strconv.FormatBool(s.Notify),
		"--batch", strconv.Itoa(s.Batch), "--workers", strconv.Itoa(s.Workers),
		"--wal-mode", string(s.WALMode), "--slot", s.Slot, "--logical-prefix", s.LogicalPrefix,
		"--async-commit="+strconv.FormatBool(s.Async))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &relayProc{cmd: cmd, stdin: stdin, published: make(chan map[string]int64, 1)}
	ready := make(chan error, 1)
	go func() {
		rd := bufio.NewReader(stdout)
		line, err := rd.ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("unexpected %q", line)
		}
		ready <- err
		var counts map[string]int64
		for {
			line, err := rd.ReadString('\n')
			if v, ok := strings.CutPrefix(line, "published "); ok {
				_ = json.Unmarshal([]byte(v), &counts)
			}
			if err != nil {
				break
			}
		}
		p.published <- counts
	}()
	select {
	case err := <-ready:
		if err != nil {
			p.kill()
			return nil, fmt.Errorf("relay %s did not start: %w", s.ID, err)
		}
	case <-time.After(30 * time.Second):
		p.kill()
		return nil, fmt.Errorf("relay %s not ready within 30s", s.ID)
	}
	return p, nil
}

// Go starts relaying; usage is counted from here.
func (p *relayProc) Go() error {
	st, err := readProc(p.cmd.Process.Pid)
	if err != nil {
		return err
	}
	p.cpu0, p.t0 = st.cpuSeconds, time.Now()
	_, err = io.WriteString(p.stdin, "go\n")
	return err
}

// usage is a relay's resource use since Go.
type usage struct {
	CPUSeconds float64
	Wall       time.Duration
	PeakRSSMB  float64 // VmHWM: the process's peak resident set so far
}

// CPUPercent is CPU time over wall time, in percent of one core.
func (u usage) CPUPercent() float64 {
	if u.Wall <= 0 {
		return 0
	}
	return 100 * u.CPUSeconds / u.Wall.Seconds()
}

// Usage reads the process's CPU time since Go and its peak RSS.
func (p *relayProc) Usage() (usage, error) {
	st, err := readProc(p.cmd.Process.Pid)
	if err != nil {
		return usage{}, err
	}
	return usage{CPUSeconds: st.cpuSeconds - p.cpu0, Wall: time.Since(p.t0), PeakRSSMB: st.hwmMB}, nil
}

// Stop closes the relay's stdin, which shuts it down, and waits for it. It returns the
// messages the relay had acknowledged per topic. Stopping twice is harmless.
func (p *relayProc) Stop() (map[string]int64, error) {
	p.stopOnce.Do(func() {
		_ = p.stdin.Close()
		done := make(chan error, 1)
		go func() { done <- p.cmd.Wait() }()
		select {
		case p.stopErr = <-done:
		case <-time.After(30 * time.Second):
			p.kill()
			<-done //nolint:errcheck // the exit status of a process we killed
			p.stopErr = errors.New("relay did not stop within 30s; killed")
		}
		select {
		case p.counts = <-p.published:
		case <-time.After(5 * time.Second):
		}
	})
	return p.counts, p.stopErr
}

func (p *relayProc) kill() {
	_ = p.cmd.Process.Kill()
}

type procStat struct {
	cpuSeconds float64
	hwmMB      float64
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat: 100 on Linux.
const clockTicks = 100

// readProc reads utime+stime from /proc/<pid>/stat and VmHWM from /proc/<pid>/status.
func readProc(pid int) (procStat, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	cpu, err := parseStatCPU(string(raw))
	if err != nil {
		return procStat{}, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procStat{}, err
	}
	return procStat{cpuSeconds: cpu, hwmMB: parseHWM(string(status))}, nil
}

// parseStatCPU returns utime+stime in seconds. The command name (field 2) may hold spaces and
// parentheses, so fields are counted from the last ')'.
func parseStatCPU(stat string) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	u, err1 := strconv.ParseFloat(f[11], 64)
	s, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return (u + s) / clockTicks, nil
}

// parseHWM returns VmHWM in MiB.
func parseHWM(status string) float64 {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}
