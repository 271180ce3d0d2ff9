package chaos

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
	"github.com/outboxgo/outbox/relay"
)

// ---- Webhooks: an HTTP receiver the run owns ----

type webhookBroker struct {
	px *faultproxy.Proxy

	mu      sync.Mutex
	addr    string // the receiver's listening address, the same after a restart
	srv     *http.Server
	deliver func(delivery)
	ready   chan struct{} // closed once consume set deliver
}

func startWebhook() (*webhookBroker, error) {
	b := &webhookBroker{ready: make(chan struct{})}
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
	w.WriteHeader(http.StatusNoContent)
}

func (b *webhookBroker) relayEnv() []string {
	return []string{
		"OUTBOX_SINK_TYPE=webhook",
		"OUTBOX_SINK_WEBHOOK_URL=http://" + b.px.Addr() + "/events",
		"OUTBOX_SINK_WEBHOOK_TIMEOUT=5s",
	}
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
}

func (b *webhookBroker) seesHeaders() bool { return true }

func (b *webhookBroker) notes() []string {
	return []string{"Webhooks: an in-process HTTP receiver answering 204 to every request; broker-restart = close its listener and connections, then listen on the same port again; the relays reach it through a fault proxy (broker-cut)."}
}
