package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/admin"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/metrics"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
	"github.com/outboxgo/outbox/relay/relaytest"
	"github.com/outboxgo/outbox/sink/webhook"
)

const (
	dashAdminToken = "dashboard-admin-token-0123456789"
	dashReadToken  = "dashboard-read-token-0123456789a"
	refundTopic    = "payments.refund"
	emailTopic     = "emails.send"
	xssTopic       = `<img src=x onerror=alert(1)>`
	pausedTopic    = "orders.paused"
)

// endpoint is the webhook sink's receiver: it accepts orders (slowly, so that a backlog
// builds under load), rejects refunds with a permanent 422 until accepting is set, rejects
// emails and the XSS topic always, and records the message id of every message it accepted.
type endpoint struct {
	delay time.Duration

	mu        sync.Mutex
	accepting bool
	seen      map[string]string // message id → path
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("Ce-Id")
	switch r.URL.Path {
	case "/refunds":
		e.mu.Lock()
		ok := e.accepting
		e.mu.Unlock()
		if !ok {
			http.Error(w, fmt.Sprintf(`{"error":"refund %d exceeds the captured amount"}`, len(id)*97), http.StatusUnprocessableEntity)
			return
		}
	case "/emails":
		http.Error(w, `template "welcome-7" not found`, http.StatusBadRequest)
		return
	case "/xss":
		http.Error(w, "no such topic", http.StatusUnprocessableEntity)
		return
	default:
		time.Sleep(e.delay)
	}
	e.mu.Lock()
	e.seen[id] = r.URL.Path
	e.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (e *endpoint) saw(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.seen[id]
	return ok
}

// chromium returns the browser to drive. Without one the test is skipped, unless
// BROWSER_TEST is set (scripts/test.sh sets it, after installing chromium): then a
// missing browser fails.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "/usr/bin/chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("BROWSER_TEST") == "" {
		t.Skip("chromium is not installed (scripts/test.sh installs it and sets BROWSER_TEST=1)")
	}
	t.Fatal("BROWSER_TEST is set but chromium is not installed (apt-get install chromium)")
	return ""
}

// browser starts a headless chromium with a fresh profile and returns a tab's context, the
// console messages collected so far, and the JavaScript dialogs the page opened (an alert
// of the XSS topic would be one).
func browser(t *testing.T) (ctx context.Context, console func() []chromedp.ConsoleMessage, dialogs func() []string) {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	tctx, cancelTab := chromedp.NewContext(actx)
	var (
		mu    sync.Mutex
		msgs  []chromedp.ConsoleMessage
		dlgs  []string
		wg    sync.WaitGroup
		lctx  context.Context
		lstop context.CancelFunc
	)
	lctx, lstop = context.WithCancel(tctx)
	// Start the browser and the tab before subscribing, so a start failure is this one.
	if err := chromedp.Do(tctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		lstop()
		cancelTab()
		cancelAlloc()
		t.Fatalf("starting chromium: %v", err)
	}
	messages := chromedp.Console(lctx)
	opened := chromedp.Events(lctx, page.JavascriptDialogOpening)
	wg.Go(func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			mu.Lock()
			msgs = append(msgs, m)
			mu.Unlock()
		}
	})
	wg.Go(func() {
		for ev, err := range opened {
			if err != nil {
				return
			}
			mu.Lock()
			dlgs = append(dlgs, ev.Type.String()+": "+ev.Message)
			mu.Unlock()
			_, _ = chromedp.Call(lctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	})
	t.Cleanup(func() {
		lstop()
		wg.Wait()
		cancelTab()
		cancelAlloc()
	})
	console = func() []chromedp.ConsoleMessage {
		mu.Lock()
		defer mu.Unlock()
		return append([]chromedp.ConsoleMessage(nil), msgs...)
	}
	dialogs = func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), dlgs...)
	}
	return tctx, console, dialogs
}

// consoleErrors are the console's errors and warnings but the failed API loads the page
// expects: a 401 before it has a token, a 404 of an endpoint this server does not have.
func consoleErrors(msgs []chromedp.ConsoleMessage) []string {
	var out []string
	for _, m := range msgs {
		if m.Type != chromedp.ConsoleError && m.Type != chromedp.ConsoleException && m.Type != chromedp.ConsoleWarning {
			continue
		}
		if m.Source == "network" && strings.Contains(m.URL, "/api/v1/") &&
			(strings.Contains(m.Text, "status of 401") || strings.Contains(m.Text, "status of 404")) {
			continue
		}
		out = append(out, fmt.Sprintf("%s %s:%d: %s", m.Type, m.URL, m.Line+1, m.Text))
	}
	return out
}

// dashboard is the server side of the browser test: a relay over a poll source on
// PostgreSQL publishing to a webhook sink, with its metrics, stats poller, history and admin
// server.
type dashboard struct {
	b   *bundle
	ep  *endpoint
	url string
	src *poll.Source
}

func startDashboard(t *testing.T) *dashboard {
	t.Helper()
	b := setup(t)
	ep := &endpoint{delay: 4 * time.Millisecond, seen: map[string]string{}}
	hook := httptest.NewServer(ep)
	t.Cleanup(hook.Close)
	sk, err := webhook.New(context.Background(), webhook.Config{URL: hook.URL + "/orders", URLs: map[string]string{
		refundTopic: hook.URL + "/refunds", emailTopic: hook.URL + "/emails", xssTopic: hook.URL + "/xss"}, MaxConcurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sk.Close() })
	src, err := poll.New(poll.Config{Store: b.store, PollInterval: 10 * time.Millisecond, BatchSize: 100,
		HeartbeatInterval: 200 * time.Millisecond, MemberTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	relayM := metrics.NewRelay(metrics.RelayOptions{Sink: sk, SinkName: "webhook"})
	table := metrics.NewTable(metrics.TableOptions{Store: b.store, Table: b.table, Interval: 200 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	stats := metrics.PollStats(src)
	reg := prometheus.NewRegistry()
	reg.MustRegister(relayM, table, metrics.NewSource("poll", stats))
	r := relaytest.Start(t, relay.Config{Source: src, Sink: sk, Hooks: []relay.Hook{relayM}, Pauses: b.store, PauseInterval: 50 * time.Millisecond})
	relayM.Watch(r.Relay)
	history := admin.NewHistory(reg, 0, 500*time.Millisecond)
	billing := dashboardInbox(t, b)
	srv, err := admin.New(admin.Config{Store: b.store, Table: b.table, Stats: table, Relay: r.Relay, Source: stats,
		Gatherer: reg, History: history, Token: dashAdminToken, ReadToken: dashReadToken, Version: "test",
		Inboxes: []admin.Inbox{billing},
		Logger:  slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { table.Run(ctx) })
	wg.Go(func() { history.Run(ctx) })
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.Contains(req.URL.RawQuery, "token") || strings.Contains(req.URL.String(), dashAdminToken) ||
			strings.Contains(req.URL.String(), dashReadToken) {
			t.Errorf("a token in a URL: %s", req.URL)
		}
		srv.ServeHTTP(w, req)
	}))
	t.Cleanup(func() {
		hs.Close()
		cancel()
		wg.Wait()
	})
	return &dashboard{b: b, ep: ep, url: hs.URL + "/", src: src}
}

// enqueue commits msgs in one transaction.
func (d *dashboard) enqueue(t *testing.T, msgs ...outbox.Message) {
	t.Helper()
	ctx := context.Background()
	if err := pgx.BeginFunc(ctx, d.b.pool, func(tx pgx.Tx) error { return d.b.writer.Enqueue(ctx, tx, msgs...) }); err != nil {
		t.Fatal(err)
	}
}

// apiStatus is the status code of an unauthenticated-free GET of the admin API.
func (d *dashboard) apiStatus(t *testing.T, path string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, d.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+dashReadToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// run runs actions in the tab, failing the test on an error.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(actx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// figures are the overview's backlog and published/s as the page shows them.
type figures struct {
	backlog int64
	rate    float64
	text    string
}

var digits = regexp.MustCompile(`[^0-9.]`)

func readFigures(t *testing.T, ctx context.Context) figures {
	t.Helper()
	backlog := eval[string](t, ctx, `document.getElementById('v-backlog').textContent`)
	rate := eval[string](t, ctx, `document.getElementById('v-rate').textContent`)
	n, err := strconv.ParseInt(digits.ReplaceAllString(backlog, ""), 10, 64)
	if err != nil {
		t.Fatalf("the page's backlog %q is not a number", backlog)
	}
	r, err := strconv.ParseFloat(digits.ReplaceAllString(rate, ""), 64)
	if err != nil {
		t.Fatalf("the page's published/s %q is not a number", rate)
	}
	return figures{backlog: n, rate: r, text: "backlog " + backlog + ", published/s " + rate}
}

// waitPage evaluates a boolean expression in the page until it holds.
func waitPage(t *testing.T, ctx context.Context, d time.Duration, what, expr string) {
	t.Helper()
	relaytest.WaitFor(t, d, what, func() bool {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		return err == nil && ok
	})
}

// TestDashboardInBrowser drives the dashboard in headless chromium against a real relay:
// it asks for the token and loads with no console error; under load its figures and charts
// move; a dead-letter group retried from the page (dry-run count, confirm) reaches the sink,
// one purged from the page is gone; a topic named like an <img> tag shows as text. It logs
// the page's load time and bytes, and writes screenshots to $OUTBOX_SCREENSHOTS when set.
func TestDashboardInBrowser(t *testing.T) {
	d := startDashboard(t)
	ctx, console, dialogs := browser(t)

	// Dead letters before the page opens: 3 refunds (422 until accepted), 2 emails (400).
	var refunds []outbox.Message
	for i := range 3 {
		refunds = append(refunds, outbox.Message{Topic: refundTopic, Key: fmt.Sprint("refund-", i), Payload: []byte(`{"amount":1200}`)})
	}
	d.enqueue(t, refunds...)
	d.enqueue(t, outbox.Message{Topic: emailTopic, Key: "user-1"}, outbox.Message{Topic: emailTopic, Key: "user-2"})
	relaytest.WaitFor(t, 20*time.Second, "5 dead letters", func() bool {
		st, err := d.b.store.Stats(context.Background())
		return err == nil && st.DeadLetters == 5
	})

	// (a) The page asks for a token (reading needs one), keeps it, and fills every panel.
	run(t, ctx, "opening the dashboard", chromedp.Navigate(d.url), chromedp.WaitVisible(chromedp.ID("token-input")))
	run(t, ctx, "giving the token", chromedp.SendKeys(chromedp.ID("token-input"), dashAdminToken), chromedp.Click(chromedp.ID("token-save")))
	waitPage(t, ctx, 20*time.Second, "every panel filled", `document.body.dataset.loaded === 'true'`)
	if got := eval[string](t, ctx, `sessionStorage.getItem('outbox.admin.token')`); got != dashAdminToken {
		t.Fatalf("sessionStorage holds %q, want the token given", got)
	}
	if f := readFigures(t, ctx); f.backlog != pending(t, d.b) {
		t.Errorf("the page shows %s, the outbox has %d unpublished", f.text, pending(t, d.b))
	}
	// Each panel whose endpoint this server lacks is hidden with its note; the others show.
	for panel, path := range map[string]string{"charts": "api/v1/history", "topics": "api/v1/topics", "relays": "api/v1/relays",
		"pauses": "api/v1/pauses", "inboxes": "api/v1/inboxes", "dead-letters": "api/v1/dead-letters/groups", "overview": "api/v1/status"} {
		want := "ready"
		if d.apiStatus(t, path) == http.StatusNotFound {
			want = "unavailable"
		}
		got := eval[string](t, ctx, fmt.Sprintf(`document.getElementById(%q).dataset.state`, panel))
		if got != want {
			t.Errorf("panel %s is %q, want %q (GET %s)", panel, got, want, path)
		}
		if want == "unavailable" && !eval[bool](t, ctx, fmt.Sprintf(`!document.querySelector('#%s > .unavailable').hidden`, panel)) {
			t.Errorf("panel %s: the 'not available' note is hidden", panel)
		}
	}
	// The inbox consumers panel: the billing inbox with the deliveries it processed.
	waitPage(t, ctx, 10*time.Second, "the billing inbox", fmt.Sprintf(
		`[...document.querySelectorAll('#inboxes-rows tr')].some(tr => tr.cells[0]?.textContent === 'billing' && tr.cells[2]?.textContent === %q)`,
		strconv.Itoa(dashInboxProcessed)))
	waitPage(t, ctx, 10*time.Second, "the refund group", fmt.Sprintf(
		`[...document.querySelectorAll('#dead-groups td.topic')].some(td => td.textContent === %q)`, refundTopic))

	// The load time: a reload with the token kept (sessionStorage), to every panel filled.
	start := time.Now()
	run(t, ctx, "reloading", chromedp.Navigate(d.url))
	waitPage(t, ctx, 20*time.Second, "every panel filled after the reload", `document.body.dataset.loaded === 'true'`)
	took := time.Since(start)
	type perf struct {
		Filled      float64 `json:"filled"`
		PageBytes   int64   `json:"page_bytes"`
		APIBytes    int64   `json:"api_bytes"`
		Files, APIs int
	}
	p := eval[perf](t, ctx, `(() => {
		const nav = performance.getEntriesByType('navigation')[0];
		const mark = performance.getEntriesByName('dashboard-filled')[0];
		const out = {filled: mark ? mark.startTime : -1, page_bytes: nav.transferSize, api_bytes: 0, Files: 1, APIs: 0};
		for (const r of performance.getEntriesByType('resource')) {
			if (r.name.includes('/api/v1/')) { out.api_bytes += r.transferSize; out.APIs++; }
			else { out.page_bytes += r.transferSize; out.Files++; }
		}
		return out;
	})()`)
	if p.Filled <= 0 || p.PageBytes <= 0 {
		t.Fatalf("performance entries: %+v", p)
	}
	t.Logf("dashboard load: navigation → every panel filled in %.0f ms (the page's clock; %v seen by the test); "+
		"page %d files, %.1f KiB transferred; first API round %d calls, %.1f KiB",
		p.Filled, took.Round(time.Millisecond), p.Files, float64(p.PageBytes)/1024, p.APIs, float64(p.APIBytes)/1024)

	// (b) Under load the figures move: the backlog and published/s while messages pour in,
	// then again once the relay drained them; the charts get points.
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		for i := range 60 {
			msgs := make([]outbox.Message, 50)
			for j := range msgs {
				msgs[j] = outbox.Message{Topic: "orders.created", Key: fmt.Sprint("order-", (i*50+j)%400), Payload: []byte(`{"total":42}`)}
			}
			if err := pgx.BeginFunc(context.Background(), d.b.pool, func(tx pgx.Tx) error {
				return d.b.writer.Enqueue(context.Background(), tx, msgs...)
			}); err != nil {
				t.Errorf("enqueue: %v", err)
				return
			}
			time.Sleep(60 * time.Millisecond)
		}
	}()
	var during figures
	relaytest.WaitFor(t, 30*time.Second, "the page to show a backlog and a publish rate under load", func() bool {
		during = readFigures(t, ctx)
		return during.backlog > 0 && during.rate > 0
	})
	<-loadDone
	relaytest.WaitFor(t, 60*time.Second, "the relay to drain the load", func() bool { return pending(t, d.b) == 0 })
	var after figures
	relaytest.WaitFor(t, 20*time.Second, "the page to show the drained outbox", func() bool {
		after = readFigures(t, ctx)
		return after.backlog == 0 && after.rate != during.rate
	})
	t.Logf("under load the page showed %s; drained, %s", during.text, after.text)
	if eval[string](t, ctx, `document.getElementById('charts').dataset.state`) == "ready" {
		points := eval[int](t, ctx, `+document.querySelector('#chart-throughput svg').getAttribute('data-points')`)
		peak := eval[bool](t, ctx, `[...document.querySelectorAll('#chart-backlog path.line')].some(p => (p.getAttribute('d').match(/L/g) || []).length >= 2)`)
		if points < 2 || !peak {
			t.Errorf("charts: %d points, a backlog line drawn %v", points, peak)
		}
	} else {
		t.Error("the history panel is not shown, though the server keeps a history")
	}
	shots := os.Getenv("OUTBOX_SCREENSHOTS")
	if shots != "" {
		screenshot(t, ctx, filepath.Join(shots, "dashboard.png"), "")
		screenshot(t, ctx, filepath.Join(shots, "dashboard-dead-letters.png"), "dead-letters")
	}

	// (c) Retry the refunds from the page: Retry on their group, the dry-run count in the
	// confirm step, Confirm; the sink, accepting refunds now, sees each of their ids.
	dead, err := d.b.store.DeadLetters(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var refundIDs []string
	for _, dl := range dead {
		if dl.Record.Topic == refundTopic {
			refundIDs = append(refundIDs, dl.Record.ID.String())
		}
	}
	if len(refundIDs) != 3 {
		t.Fatalf("%d refund dead letters, want 3", len(refundIDs))
	}
	d.ep.mu.Lock()
	d.ep.accepting = true
	d.ep.mu.Unlock()
	clickGroup(t, ctx, refundTopic, "retry")
	if text := eval[string](t, ctx, `document.getElementById('confirm-text').textContent`); !strings.Contains(text, "3 dead letters") {
		t.Fatalf("the confirm step says %q, want the dry-run count of 3 dead letters", text)
	}
	run(t, ctx, "confirming the retry", chromedp.Click(chromedp.ID("confirm-ok")))
	relaytest.WaitFor(t, 30*time.Second, "the retried refunds at the sink", func() bool {
		for _, id := range refundIDs {
			if !d.ep.saw(id) {
				return false
			}
		}
		return true
	})
	waitPage(t, ctx, 10*time.Second, "the retry's notice", `/Retried 3 of 3/.test(document.querySelector('#dead-letters > .notice')?.textContent || '')`)

	// Purge the emails the same way: they are gone from the dead letters.
	clickGroup(t, ctx, emailTopic, "purge")
	run(t, ctx, "confirming the purge", chromedp.Click(chromedp.ID("confirm-ok")))
	relaytest.WaitFor(t, 10*time.Second, "the purged emails gone", func() bool {
		st, err := d.b.store.Stats(context.Background())
		return err == nil && st.DeadLetters == 0
	})

	// (d) A topic named like an <img> tag that dead-letters shows as text in every panel that
	// lists it: no element made of it, no alert.
	d.enqueue(t, outbox.Message{Topic: xssTopic, Key: `<b>key</b>`})
	topic, _ := json.Marshal(xssTopic)
	waitPage(t, ctx, 20*time.Second, "the XSS topic's group", fmt.Sprintf(
		`[...document.querySelectorAll('#dead-groups td.topic')].some(td => td.textContent === %s)`, topic))
	if eval[string](t, ctx, `document.getElementById('topics').dataset.state`) == "ready" {
		waitPage(t, ctx, 10*time.Second, "the XSS topic in the topics panel", fmt.Sprintf(
			`[...document.querySelectorAll('#topics-rows td')].some(td => td.textContent === %s)`, topic))
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('img, [onerror], td b').length`); n != 0 {
		t.Errorf("%d img, onerror or b elements in the page's tables: row data was parsed as HTML", n)
	}

	// (e) Pause a topic from the Pauses panel's form: the relay holds its message; Resume on
	// the pause's row: the message is delivered.
	_ = eval[bool](t, ctx, `(document.querySelector('#pause-form button[type=submit]').setAttribute('id', 'pause-submit'), true)`)
	run(t, ctx, "pausing a topic from the form",
		chromedp.SetValue(chromedp.ID("pause-kind"), "topic"),
		chromedp.SendKeys(chromedp.ID("pause-name"), pausedTopic),
		chromedp.SendKeys(chromedp.ID("pause-reason"), "browser test"),
		chromedp.Click(chromedp.ID("pause-submit")))
	pausedRow := fmt.Sprintf(`[...document.querySelectorAll('#pauses-rows tr')].find(tr => tr.cells[1]?.textContent === %q)`, pausedTopic)
	waitPage(t, ctx, 10*time.Second, "the pause listed", pausedRow+` !== undefined`)
	relaytest.WaitFor(t, 10*time.Second, "the store to keep the pause", func() bool {
		ps, err := d.b.store.ListPauses(context.Background())
		return err == nil && len(ps) == 1 && ps[0].Reason == "browser test"
	})
	time.Sleep(200 * time.Millisecond) // the relay reads the pauses every 50ms
	held := []outbox.Message{{Topic: pausedTopic, Key: "held-1"}}
	d.enqueue(t, held...)
	time.Sleep(time.Second)
	if d.ep.saw(held[0].ID.String()) {
		t.Fatal("the paused topic's message was delivered")
	}
	if shots != "" {
		screenshot(t, ctx, filepath.Join(shots, "dashboard-pauses.png"), "pauses")
	}
	_ = eval[bool](t, ctx, `(`+pausedRow+`.querySelector('button').setAttribute('id', 'click-target'), true)`)
	run(t, ctx, "resuming from the pauses panel", chromedp.Click(chromedp.ID("click-target")))
	relaytest.WaitFor(t, 20*time.Second, "the resumed topic's message at the sink", func() bool { return d.ep.saw(held[0].ID.String()) })
	waitPage(t, ctx, 10*time.Second, "the pause gone from the panel", pausedRow+` === undefined`)
	if got := dialogs(); len(got) > 0 {
		t.Errorf("the page opened dialogs: %q", got)
	}
	if errs := consoleErrors(console()); len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}
}

// clickGroup clicks the Retry or Purge button (verb) of topic's dead-letter group and waits
// for the confirm step.
func clickGroup(t *testing.T, ctx context.Context, topic, verb string) {
	t.Helper()
	q, _ := json.Marshal(topic)
	waitPage(t, ctx, 10*time.Second, "the group of "+topic, fmt.Sprintf(
		`[...document.querySelectorAll('#dead-groups tr')].some(tr => tr.cells[0].textContent === %s)`, q))
	mark := fmt.Sprintf(`(() => {
		document.getElementById('click-target')?.removeAttribute('id');
		const tr = [...document.querySelectorAll('#dead-groups tr')].find(tr => tr.cells[0].textContent === %s);
		const b = tr && tr.querySelector('button.%s');
		if (!b) return false;
		b.setAttribute('id', 'click-target');
		return true;
	})()`, q, verb)
	// The page redraws every 2 s; should the button's row be redrawn between finding and
	// clicking it, find it again.
	var err error
	for range 5 {
		if !eval[bool](t, ctx, mark) {
			t.Fatalf("no %s button on the group of %s", verb, topic)
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = chromedp.Do(cctx, chromedp.Click(chromedp.ID("click-target")))
		cancel()
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("clicking %s on the group of %s: %v", verb, topic, err)
	}
	run(t, ctx, "the confirm step of "+verb+" "+topic, chromedp.WaitVisible(chromedp.ID("confirm-ok")))
	_ = eval[bool](t, ctx, `(document.getElementById('click-target')?.removeAttribute('id'), true)`)
}

// screenshot writes a PNG of the whole page (id "") or of one element.
func screenshot(t *testing.T, ctx context.Context, path, id string) {
	t.Helper()
	var (
		buf []byte
		err error
	)
	if id == "" {
		buf, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	} else {
		buf, err = chromedp.Run(ctx, chromedp.Screenshot(chromedp.ID(id)))
	}
	if err != nil {
		t.Fatalf("screenshot %s: %v", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d KiB)", path, len(buf)/1024)
}

// dashInboxProcessed is how many deliveries the browser test's billing inbox processed.
const dashInboxProcessed = 3

// inboxReport is an inbox as the admin server reports on it (admin.Inbox).
type inboxReport struct{ *inbox.Inbox }

func (r inboxReport) InboxStats(ctx context.Context) (admin.InboxStats, error) {
	st, err := r.Stats(ctx)
	return admin.InboxStats{Processed: st.Processed, ProcessedCapped: st.ProcessedCapped,
		LastProcessedAt: st.LastProcessedAt, DeadLetters: st.DeadLetters}, err
}

// dashboardInbox returns a migrated inbox of consumer billing beside the outbox, which has
// processed dashInboxProcessed deliveries, for the dashboard's inbox consumers panel.
func dashboardInbox(t *testing.T, b *bundle) inboxReport {
	t.Helper()
	ctx := context.Background()
	in, err := inbox.New(ctx, inbox.Config{Pool: b.pool, Consumer: "billing", Table: b.table + "_inbox"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range dashInboxProcessed {
		m := inbox.Message{ID: fmt.Sprintf("dashboard-%d", i), Topic: "orders.created", Key: "k", Time: time.Now()}
		out, err := in.Deliver(ctx, inbox.Delivery{Message: m}, func(context.Context, outbox.Tx, inbox.Message) error { return nil })
		if err != nil || out.Result != inbox.Applied {
			t.Fatalf("deliver %s: %+v, %v", m.ID, out, err)
		}
	}
	return inboxReport{in}
}
