package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// SystemConfig configures the services of the example but the channel publishers.
type SystemConfig struct {
	// Storage is where the services keep their tables; its Dir also holds the embedded
	// NATS server's store.
	Storage Storage
	// NATSURL is a NATS server with JetStream; "" starts one embedded, storing under Dir.
	NATSURL string
	// Stream is the JetStream stream of the order events. Default DefaultStream.
	Stream string
	// Channels customers may choose. Default DefaultChannels.
	Channels []string
	Logger   *slog.Logger
}

// System is the order service (and its relay to NATS), the notification service (consuming
// through the inbox) and the subscription service's HTTP API.
type System struct {
	NATSURL string
	Stream  string
	Storage Storage // where the notification service's notify_outbox is: what the publishers relay
	SubsURL string  // the subscription service's base URL
	Orders  *OrderService

	nats   *server.Server
	orders *Orders
	notify *NotifyDB
	http   *http.Server
	ctx    context.Context // ends when Close begins
	cancel context.CancelFunc
	wg     sync.WaitGroup
	logger *slog.Logger

	mu   sync.Mutex
	errs []error
}

// StartSystem starts the services. Close stops them.
func StartSystem(ctx context.Context, cfg SystemConfig) (_ *System, err error) {
	if len(cfg.Channels) == 0 {
		cfg.Channels = DefaultChannels
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &System{ctx: runCtx, cancel: cancel, logger: cfg.Logger, Storage: cfg.Storage, NATSURL: cfg.NATSURL, Stream: cmp.Or(cfg.Stream, DefaultStream)}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	if s.NATSURL == "" {
		natsDir := filepath.Join(cfg.Storage.Dir, "nats")
		if err := os.MkdirAll(natsDir, 0o750); err != nil {
			return nil, err
		}
		if s.nats, err = StartNATS(natsDir, 0); err != nil {
			return nil, err
		}
		s.NATSURL = s.nats.ClientURL()
	}
	if s.orders, err = OpenOrders(ctx, cfg.Storage, cfg.Logger); err != nil {
		return nil, err
	}
	s.Orders = s.orders.Service
	if s.notify, err = OpenNotify(ctx, cfg.Storage, cfg.Logger); err != nil {
		return nil, err
	}
	notifier, err := NewNotifier(cfg.Storage, cfg.Channels)
	if err != nil {
		return nil, err
	}
	subs := NewSubscriptionService(cfg.Storage, s.notify.DB, cfg.Channels)
	ln, err := net.Listen("tcp", "127.0.0.1:0") //nolint:noctx // the subscription API on loopback
	if err != nil {
		return nil, err
	}
	s.SubsURL = "http://" + ln.Addr().String()
	s.http = &http.Server{Handler: subs.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.http.Serve(ln) }()

	s.Go("order relay", func(ctx context.Context) error {
		return RunOrderRelay(ctx, s.orders.Store, s.NATSURL, s.Stream, cfg.Logger)
	})
	s.Go("notification service", func(ctx context.Context) error {
		return RunNotifier(ctx, s.notify, notifier, s.NATSURL, s.Stream, cfg.Logger)
	})
	return s, nil
}

// Go runs fn until the system closes (Close cancels fn's ctx first, then waits for fn).
func (s *System) Go(name string, fn func(ctx context.Context) error) {
	ctx := s.ctx
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			s.mu.Lock()
			s.errs = append(s.errs, fmt.Errorf("%s: %w", name, err))
			s.mu.Unlock()
			s.logger.Error("stopped", slog.String("component", name), slog.Any("error", err))
		}
	}()
}

// Err returns the errors of components that stopped on their own.
func (s *System) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.errs...)
}

// Subscribe posts a subscription to the subscription service's API.
func (s *System) Subscribe(ctx context.Context, req SubscribeRequest) error {
	return s.post(ctx, "/subscribe", req, http.StatusCreated)
}

// Unsubscribe posts an unsubscribe to the subscription service's API.
func (s *System) Unsubscribe(ctx context.Context, req UnsubscribeRequest) error {
	return s.post(ctx, "/unsubscribe", req, http.StatusOK)
}

func (s *System) post(ctx context.Context, path string, body any, want int) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.SubsURL+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		var msg bytes.Buffer
		_, _ = msg.ReadFrom(resp.Body)
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, bytes.TrimSpace(msg.Bytes()))
	}
	return nil
}

// Pending returns how many notifications wait in notify_outbox, per topic.
func (s *System) Pending(ctx context.Context) (map[string]int, error) {
	rows, err := s.notify.DB.QueryContext(ctx, `SELECT topic, count(*) FROM `+s.notify.table+` WHERE published_at IS NULL GROUP BY topic`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var t string
		var n int
		if err := rows.Scan(&t, &n); err != nil {
			return nil, err
		}
		out[t] = n
	}
	return out, rows.Err()
}

// Dead returns how many notifications were dead-lettered (by the publishers).
func (s *System) Dead(ctx context.Context) (int, error) {
	st, err := s.notify.Outbox.Stats(ctx)
	return int(st.DeadLetters), err
}

// PublisherArgs are the flags of `notification publisher` that say where notify_outbox is.
func (s *System) PublisherArgs() []string {
	if s.Storage.URL == "" {
		return []string{"--dir", s.Storage.Dir}
	}
	return []string{"--database-url", s.Storage.URL, "--schema", s.Storage.schema()}
}

// Close stops every component: it cancels them first, then waits (at most 20s) for them.
func (s *System) Close() error {
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		err = errors.New("components did not stop within 20s")
	}
	if s.http != nil {
		_ = s.http.Close()
	}
	if s.notify != nil {
		err = errors.Join(err, s.notify.Close())
	}
	if s.orders != nil {
		err = errors.Join(err, s.orders.Close())
	}
	if s.nats != nil {
		s.nats.Shutdown()
		s.nats.WaitForShutdown()
	}
	return err
}
