package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/natstest"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/sink"
)

var (
	flagCustomers = flag.Int("customers", 100, "scenario: customers (one order each)")
	flagChanges   = flag.Int("changes", 1000, "scenario: status changes")
	flagRate      = flag.Int("rate", 80, "scenario: status changes per second")
)

// TestMain runs the example's main instead of the tests when this binary is started as a
// publisher process (by the scenario, or by the demo's supervisor in TestDemo).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "publisher" {
		// The scenario stops its publishers with SIGKILL (the crash) or SIGTERM (the end).
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "notification:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// publisherProc is a channel publisher running as a process of its own.
type publisherProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer
}

// startPublisher starts `notification publisher args...` as a subprocess (this test binary,
// dispatching in TestMain); t.Cleanup kills it if it still runs.
func startPublisher(t *testing.T, args ...string) *publisherProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"publisher"}, args...)...) // the test binary itself; killed in Cleanup
	p := &publisherProc{cmd: cmd, done: make(chan struct{}), log: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = &lockedBuffer{b: p.log}, &lockedBuffer{b: p.log}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting publisher %v: %v", args, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("publisher %v did not exit after SIGKILL", args)
		}
	})
	return p
}

// kill SIGKILLs the process and waits (at most 10s) for it to be gone.
func (p *publisherProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the publisher did not die within 10s of SIGKILL")
	}
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the publisher ended with %v, not by SIGKILL", p.cmd.ProcessState)
	}
}

// stop asks the process to end (SIGTERM) and waits at most 10s before killing it.
func (p *publisherProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// pushSink is the fourth channel, added by this test without touching the example's code:
// a sink of its own (push notifications through a provider API, here a stand-in) and a
// publisher of its own for topic notify.push. The notification service only learns the
// channel's name (SystemConfig.Channels, the --channels of a deployment).
type pushSink struct {
	url    string
	client http.Client
}

func (s *pushSink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	res := make([]error, len(msgs))
	for i, m := range msgs {
		var n Notification
		if err := json.Unmarshal(m.Payload, &n); err != nil {
			res[i] = sink.Permanent(err)
			continue
		}
		body, _ := json.Marshal(map[string]string{"to": n.Address, "body": "Order " + n.Order + ": " + n.Status, "reference": Ref(n.Order, n.Version)})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/v1/messages", bytes.NewReader(body))
		if err != nil {
			res[i] = sink.Permanent(err)
			continue
		}
		req.Header.Set("Idempotency-Key", m.ID.String())
		resp, err := s.client.Do(req)
		if err != nil {
			res[i] = sink.Unavailable(err)
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode < 300:
		case resp.StatusCode >= 500:
			res[i] = fmt.Errorf("push provider: %s", resp.Status)
		default:
			res[i] = sink.Permanentf("push provider: %s", resp.Status)
		}
	}
	return res
}

func (s *pushSink) Close() error { return nil }

// TestScenario is the scenario: customers with random channel sets (sms, email,
// voice, and push, a channel the test adds), status changes, the sms publisher SIGKILLed and
// restarted mid-run, the SMTP server cut mid-run, some customers unsubscribed. Every
// subscriber must get each notification once per chosen channel (counted at the providers,
// after their dedupe), no channel they did not choose, nothing after their unsubscribe.
func TestScenario(t *testing.T) {
	sc := scenario{storage: Storage{Dir: t.TempDir()}, customers: *flagCustomers, changes: *flagChanges, rate: *flagRate}
	if testing.Short() {
		sc.customers, sc.changes = 30, 200
	}
	runScenario(t, sc)
}

// TestScenarioRealServices runs the scenario on PostgreSQL (a schema of the test's own) and
// the shared NATS server (a stream of the test's own), at twice the rate: PostgreSQL takes
// concurrent writers. Skipped with -short.
func TestScenarioRealServices(t *testing.T) {
	_, schema := pgtest.Schema(t)
	nc := natstest.Connect(t)
	stream := "NOTIFICATION_" + strings.ToUpper(schema)
	t.Cleanup(func() {
		if js, err := jetstream.New(nc); err == nil {
			_ = js.DeleteStream(context.Background(), stream)
		}
	})
	runScenario(t, scenario{
		storage: Storage{Dir: t.TempDir(), URL: pgtest.URL(), Schema: schema}, natsURL: natstest.URL(), stream: stream,
		customers: *flagCustomers, changes: *flagChanges, rate: 2 * *flagRate,
	})
}

type scenario struct {
	storage                  Storage
	natsURL, stream          string // "": an embedded server
	customers, changes, rate int
}

func runScenario(t *testing.T, sc scenario) {
	customers, changes, rate := sc.customers, sc.changes, sc.rate
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	newProvider := func(name string) *Provider {
		p, err := StartProvider(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		return p
	}
	sms, voice, push := newProvider("sms"), newProvider("voice"), newProvider("push")
	sms.SetFaults(Faults{Before500: 0.03, After500: 0.03, TooMany: 0.01})
	voice.SetFaults(Faults{After500: 0.03})
	mail, err := StartMailServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mail.Stop)
	recipients := []Recipient{sms, mail, voice, push}

	channels := append(append([]string{}, DefaultChannels...), "push")
	sys, err := StartSystem(ctx, SystemConfig{Storage: sc.storage, NATSURL: sc.natsURL, Stream: sc.stream, Channels: channels, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sys.Close(); err != nil { // cancels the in-process components, then waits
			t.Error(err)
		}
	})

	// The three channel publishers are processes; the fourth (push) runs here.
	procs := map[string]*publisherProc{
		"sms":   startPublisher(t, append(sys.PublisherArgs(), "--channel", "sms", "--provider-url", sms.URL())...),
		"email": startPublisher(t, append(sys.PublisherArgs(), "--channel", "email", "--smtp", mail.Addr())...),
		"voice": startPublisher(t, append(sys.PublisherArgs(), "--channel", "voice", "--provider-url", voice.URL())...),
	}
	sys.Go("publisher push", func(ctx context.Context) error {
		return RunPublisher(ctx, PublisherConfig{Storage: sys.Storage, Channel: "push", Sink: &pushSink{url: push.URL()}, Logger: logger})
	})

	var (
		killedAt, restartedAt time.Time
		smsBeforeKill         int
		cutDone               = make(chan error, 1)
	)
	ledger := NewLedger()
	started := time.Now()
	err = Drive(ctx, sys, ledger, DriveConfig{
		Customers: customers, Changes: changes, Rate: rate, Channels: channels,
		UnsubscribeFirst: customers / 20, UnsubscribeMid: customers / 20, Seed: 18,
		Progress: func(i int) {
			switch i {
			case changes * 3 / 10:
				smsBeforeKill = sms.Stats().Delivered
				procs["sms"].kill(t)
				killedAt = time.Now()
				t.Logf("change %d: sms publisher SIGKILLed after %d sms delivered", i, smsBeforeKill)
				time.Sleep(300 * time.Millisecond)
				procs["sms"] = startPublisher(t, append(sys.PublisherArgs(), "--channel", "sms", "--provider-url", sms.URL())...)
				restartedAt = time.Now()
			case changes / 2:
				t.Logf("change %d: SMTP server cut for 1.5s", i)
				mail.Stop()
				go func() {
					time.Sleep(1500 * time.Millisecond)
					cutDone <- mail.Start()
				}()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-cutDone:
		if err != nil {
			t.Fatalf("restarting the SMTP server: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the SMTP server did not come back")
	}
	committed := time.Since(started)
	drained := waitFor(ctx, 60*time.Second, func() bool {
		p, err := sys.Pending(ctx)
		return err == nil && len(p) == 0 && ledger.Check(AllDeliveries(recipients...)).Missing == 0
	})
	elapsed := time.Since(started)
	for _, p := range procs {
		p.stop()
	}

	rep := ledger.Check(AllDeliveries(recipients...))
	dead, err := sys.Dead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var totalDup int
	for _, r := range recipients {
		st := r.Stats()
		totalDup += st.Duplicates
		t.Logf("%-5s %4d delivered, %3d duplicates seen and deduped by the receiver (%d of messages it had acknowledged), %4d requests", st.Channel, st.Delivered, st.Duplicates, st.AfterAck, st.Requests)
		if st.Delivered == 0 {
			t.Errorf("%s delivered nothing", st.Channel)
		}
	}
	t.Logf("%d customers, %d status changes committed in %s, all delivered after %s; owed %d, delivered %d (+%d optional, before a mid-run unsubscribe), duplicates deduped %d, dead letters %d",
		customers, changes+customers, committed.Round(time.Millisecond), elapsed.Round(time.Millisecond), rep.Expected, rep.Delivered, rep.Optional, totalDup, dead)
	for _, p := range rep.Problems {
		t.Error(p)
	}
	if !drained || !rep.OK() {
		t.Fatalf("missing %d, delivered twice %d, unwanted %d (drained: %v)", rep.Missing, rep.Doubles, rep.Unwanted, drained)
	}
	if dead != 0 {
		t.Errorf("%d notifications dead-lettered", dead)
	}
	if err := sys.Err(); err != nil {
		t.Error(err)
	}
	var afterRestart int
	for _, d := range sms.Deliveries() {
		if d.At.After(restartedAt) {
			afterRestart++
		}
	}
	if killedAt.IsZero() || afterRestart == 0 {
		t.Errorf("the restarted sms publisher delivered nothing (killed at %v)", killedAt)
	}
}

// The provider sink maps each answer of the provider to the sink contract.
func TestProviderSinkErrors(t *testing.T) {
	ctx := context.Background()
	p, err := StartProvider("sms")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	s := NewProviderSink(p.URL())
	rec := func(to string) *outbox.Record {
		body, _ := json.Marshal(Notification{ID: "n", Order: "o-1", Status: "placed", Version: 1, Channel: "sms", Address: to})
		return &outbox.Record{Message: outbox.Message{ID: outbox.NewID(), Topic: Topic("sms"), Payload: body}}
	}
	publish := func(r *outbox.Record) error { return s.Publish(ctx, []*outbox.Record{r})[0] }

	if err := publish(rec("12")); !sink.IsPermanent(err) {
		t.Errorf("invalid number (422): %v, want permanent (dead letter)", err)
	}
	p.SetFaults(Faults{TooMany: 1})
	if err := publish(rec("+15550000001")); err == nil || sink.IsPermanent(err) || sink.IsUnavailable(err) || !isRetryAfter(err) {
		t.Errorf("429: %v, want retryable with Retry-After", err)
	}
	p.SetFaults(Faults{After500: 1})
	r := rec("+15550000001")
	if err := publish(r); err == nil || sink.IsPermanent(err) || sink.IsUnavailable(err) {
		t.Errorf("500: %v, want retryable", err)
	}
	p.SetFaults(Faults{})
	if err := publish(r); !sink.IsDuplicate(err) {
		t.Errorf("resend of a message the provider stored: %v, want a duplicate (success)", err)
	}
	if st := p.Stats(); st.Delivered != 1 || st.Duplicates != 1 {
		t.Errorf("provider saw %+v, want 1 delivered and 1 duplicate", st)
	}
	p.SetOutage(true)
	res := s.Publish(ctx, []*outbox.Record{rec("+15550000002"), rec("+15550000003")})
	if !sink.IsUnavailable(res[0]) || !sink.IsUnavailable(res[1]) {
		t.Errorf("503: %v, want unavailable for the whole batch", res)
	}
	p.SetOutage(false)
	_ = p.Close()
	if err := publish(rec("+15550000004")); !sink.IsUnavailable(err) {
		t.Errorf("connection refused: %v, want unavailable", err)
	}
}

// The email sink maps SMTP's answers to the sink contract, and the server dedupes by
// Message-ID.
func TestEmailSinkErrors(t *testing.T) {
	ctx := context.Background()
	m, err := StartMailServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	s := NewEmailSink(m.Addr())
	rec := func(to string) *outbox.Record {
		body, _ := json.Marshal(Notification{ID: "n", Order: "o-1", Status: "placed", Version: 1, Channel: "email", Address: to})
		return &outbox.Record{Message: outbox.Message{ID: outbox.NewID(), Topic: Topic("email"), Payload: body}, CreatedAt: time.Now()}
	}
	good := rec("c-1@example.com")
	res := s.Publish(ctx, []*outbox.Record{good, rec("not an address"), rec("c-2@example.com")})
	if res[0] != nil || !sink.IsPermanent(res[1]) || res[2] != nil {
		t.Errorf("results %v, want nil, permanent (550), nil", res)
	}
	if err := s.Publish(ctx, []*outbox.Record{good})[0]; err != nil {
		t.Errorf("resend: %v", err)
	}
	if st := m.Stats(); st.Delivered != 2 || st.Duplicates != 1 {
		t.Errorf("server saw %+v, want 2 stored and 1 duplicate", st)
	}
	m.Stop()
	if err := s.Publish(ctx, []*outbox.Record{rec("c-3@example.com")})[0]; !sink.IsUnavailable(err) {
		t.Errorf("server down: %v, want unavailable", err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(ctx, []*outbox.Record{rec("c-3@example.com")})[0]; err != nil {
		t.Errorf("after the restart: %v", err)
	}
	if d := m.Deliveries(); len(d) != 3 || d[0].Ref != "o-1#1" || d[0].To != "c-1@example.com" {
		t.Errorf("stored %+v", d)
	}
}

// The subscription API refuses channels the deployment does not run.
func TestSubscribeRefusesUnknownChannels(t *testing.T) {
	ctx := context.Background()
	sys, err := StartSystem(ctx, SystemConfig{Storage: Storage{Dir: t.TempDir()}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := sys.Close(); err != nil {
			t.Error(err)
		}
	}()
	err = sys.Subscribe(ctx, SubscribeRequest{Customer: "c-1", Order: "o-1", Channels: map[string]string{"pigeon": "roof"}})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("400")) {
		t.Errorf("unknown channel: %v, want 400", err)
	}
	if err := sys.Subscribe(ctx, SubscribeRequest{Customer: "c-1", Order: "o-1", Channels: map[string]string{"sms": "+15550000001"}}); err != nil {
		t.Error(err)
	}
	if err := sys.Unsubscribe(ctx, UnsubscribeRequest{Customer: "c-1"}); err != nil {
		t.Error(err)
	}
}

// The demo (`go run ./examples/notification`) runs to its summary and exits 0, its sms
// publisher process killed with SIGKILL and restarted on the way.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, logs lockedBuffer
	out.b, logs.b = &bytes.Buffer{}, &bytes.Buffer{}
	err := run(ctx, []string{"--duration", "3s", "--quiet", "--customers", "8", "--dir", t.TempDir()}, &out, &logs)
	text := out.b.String()
	if err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, text, logs.b.String())
	}
	for _, want := range []string{"died: signal: killed", "publisher sms restarted", "SMTP server back", "missing 0, delivered twice 0, unwanted 0", "OK: every subscriber"} {
		if !bytes.Contains([]byte(text), []byte(want)) {
			t.Errorf("the demo's output lacks %q:\n%s", want, text)
		}
	}
}

// The ledger's check catches each way a notification can go wrong.
func TestLedgerCatches(t *testing.T) {
	l := NewLedger()
	l.Subscribed("o-1", map[string]string{"sms": "+15550000001", "email": "c-1@example.com"})
	l.Subscribed("o-2", map[string]string{"sms": "+15550000002"})
	l.Committed("o-1", 2)
	l.Committed("o-2", 1)
	l.Unsubscribed("o-2")
	l.Committed("o-2", 2)
	ok := []Delivery{
		{Channel: "sms", Key: "a", Ref: "o-1#1", To: "+15550000001"},
		{Channel: "email", Key: "b", Ref: "o-1#1", To: "c-1@example.com"},
		{Channel: "sms", Key: "c", Ref: "o-1#2", To: "+15550000001"},
		{Channel: "email", Key: "d", Ref: "o-1#2", To: "c-1@example.com"},
		{Channel: "sms", Key: "e", Ref: "o-2#1", To: "+15550000002"}, // before the unsubscribe: allowed
	}
	if r := l.Check(ok); !r.OK() || r.Expected != 4 || r.Optional != 1 {
		t.Fatalf("a correct run: %+v", r)
	}
	for name, c := range map[string]struct {
		deliveries []Delivery
		field      func(Report) int
	}{
		"missing":            {ok[1:], func(r Report) int { return r.Missing }},
		"twice":              {append(ok[:5:5], Delivery{Channel: "sms", Key: "f", Ref: "o-1#1", To: "+15550000001"}), func(r Report) int { return r.Doubles }},
		"channel not chosen": {append(ok[:5:5], Delivery{Channel: "voice", Key: "g", Ref: "o-1#1", To: "+15550000001"}), func(r Report) int { return r.Unwanted }},
		"wrong address":      {append(ok[:5:5], Delivery{Channel: "email", Key: "h", Ref: "o-1#3", To: "x@example.com"}), func(r Report) int { return r.Unwanted }},
		"after unsubscribe":  {append(ok[:5:5], Delivery{Channel: "sms", Key: "i", Ref: "o-2#2", To: "+15550000002"}), func(r Report) int { return r.Unwanted }},
		"never committed":    {append(ok[:5:5], Delivery{Channel: "sms", Key: "j", Ref: "o-1#9", To: "+15550000001"}), func(r Report) int { return r.Unwanted }},
	} {
		if r := l.Check(c.deliveries); r.OK() || c.field(r) != 1 {
			t.Errorf("%s: %+v", name, r)
		}
	}
}

// isRetryAfter reports whether err carries a Retry-After.
func isRetryAfter(err error) bool {
	var ra sink.RetryAfter
	return errors.As(err, &ra)
}
