package chaos

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
	"github.com/outboxgo/outbox/relay"
)

// ---- Webhooks: an HTTP receiver the run owns ----

type webhookBroker struct {
	px *faultproxy.Proxy

	// With consumers (Config.Consumers): the relays sign with secret, and the receiver
	// forwards each request to a consumer process, answering with its status.
	secret  string
	targets []string // the consumer processes' listening addresses
	client  *http.Client
	next    atomic.Uint32

	mu      sync.Mutex
	addr    string // the receiver's listening address, the same after a restart
	srv     *http.Server
	deliver func(delivery)
	ready   chan struct{} // closed once consume set deliver
}

func startWebhook(consumers bool) (*webhookBroker, error) {
	b := &webhookBroker{ready: make(chan struct{})}
	if consumers {
		var key [32]byte
		_, _ = rand.Read(key[:])
		b.secret = "whsec_" + base64.StdEncoding.EncodeToString(key[:])
		b.client = &http.Client{Timeout: 10 * time.Second}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b.addr = ln.Addr().String()
	b.serve(ln)
	if b.px, err = startProxy(b.addr); err != nil {
		b.stop()
		return nil, err
	}
	return b, nil
}

func (b *webhookBroker) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(b.handle), ReadHeaderTimeout: 10 * time.Second}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// handle records a request as a delivery once its body was read whole, and acknowledges it.
func (b *webhookBroker) handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := r.Header.Get("webhook-id")
	if id == "" {
		id = r.Header.Get("ce-id")
	}
	select {
	case <-b.ready:
	case <-r.Context().Done():
		return
	}
	b.deliver(delivery{id: id, payload: body, at: time.Now(), headers: r.Header})
	if len(b.targets) > 0 {
		b.forward(w, r, body)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// forward hands a request to a consumer process, the next one in turn that answers, and
// gives the relay its status and Retry-After; 503 when none answers.
func (b *webhookBroker) forward(w http.ResponseWriter, r *http.Request, body []byte) {
	start := int(b.next.Add(1))
	var last error
	for j := range b.targets {
		target := b.targets[(start+j)%len(b.targets)]
		req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, "http://"+target+"/"+outboxTopic, bytes.NewReader(body))
		if err != nil {
			last = err
			continue
		}
		req.Header = r.Header.Clone()
		resp, err := b.client.Do(req)
		if err != nil {
			last = err
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		w.WriteHeader(resp.StatusCode)
		return
	}
	w.Header().Set("Retry-After", "1")
	http.Error(w, fmt.Sprintf("no consumer process answered: %v", last), http.StatusServiceUnavailable)
}

func (b *webhookBroker) relayEnv() []string {
	env := []string{
		"OUTBOX_SINK_TYPE=webhook",
		"OUTBOX_SINK_WEBHOOK_URL=http://" + b.px.Addr() + "/" + outboxTopic,
		"OUTBOX_SINK_WEBHOOK_TIMEOUT=5s",
	}
	if b.secret != "" {
		env = append(env, "OUTBOX_SINK_WEBHOOK_SECRETS="+b.secret)
	}
	return env
}

// consume hands the receiver's requests to deliver until ctx ends.
func (b *webhookBroker) consume(ctx context.Context, deliver func(delivery)) {
	b.deliver = deliver
	close(b.ready)
	<-ctx.Done()
}

// restart closes the receiver (listener and open connections), keeps the port closed for
// down, and listens on it again.
func (b *webhookBroker) restart(ctx context.Context, down time.Duration) error {
	b.stop()
	_ = relay.Sleep(ctx, down)
	var ln net.Listener
	var err error
	for range 50 { // the port may linger briefly
		if ln, err = net.Listen("tcp", b.addr); err == nil {
			b.serve(ln)
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("listening again on %s: %w", b.addr, err)
}

func (b *webhookBroker) stop() {
	b.mu.Lock()
	srv := b.srv
	b.srv = nil
	b.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

func (b *webhookBroker) canRestart() bool { return true }
func (b *webhookBroker) cut()             { b.px.Cut() }
func (b *webhookBroker) restore()         { b.px.Restore() }

func (b *webhookBroker) sweep(context.Context, func(delivery)) error { return errNoSweep }

func (b *webhookBroker) close() {
	if b.px != nil {
		b.px.Close()
	}
	b.stop()
	if b.client != nil {
		b.client.CloseIdleConnections()
	}
}

func (b *webhookBroker) seesHeaders() bool { return true }

func (b *webhookBroker) notes() []string {
	answer := "answering 204 to every request"
	if b.secret != "" {
		answer = "forwarding every request to the consumer processes (see below)"
	}
	return []string{"Webhooks: an in-process HTTP receiver " + answer + "; broker-restart = close its listener and connections, then listen on the same port again; the relays reach it through a fault proxy (broker-cut)."}
}

// inboxSetup picks a loopback port for each consumer process, which serves webhookinbox on
// it (the same port after a restart); the receiver forwards to them.
func (b *webhookBroker) inboxSetup(_ context.Context, n int) (func(int) map[string]string, error) {
	var targets []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		targets = append(targets, ln.Addr().String())
		_ = ln.Close()
	}
	b.targets = targets
	return func(i int) map[string]string {
		return map[string]string{"listen": targets[i], "secret": b.secret, "topic": outboxTopic}
	}, nil
}

func (b *webhookBroker) inboxProcesses(n int) int { return n }

func (b *webhookBroker) inboxNotes(n int) []string {
	return []string{fmt.Sprintf("consumers (webhooks): %d processes serving webhookinbox (signatures checked: the relays sign with a run secret), behind the run's receiver, which records each request, forwards it to the next process that answers and gives the relay that process's status (503 when none answers); a key's order is the sender's (the sink sends a key's next message only after the previous one's 2xx, which a process answers after its commit), so any process may take any request. broker-cut and broker-restart sever the relays from the receiver, not the receiver from the processes.", n)}
}
