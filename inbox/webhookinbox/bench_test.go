package webhookinbox_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/webhookinbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/sink/webhook"
)

// BenchmarkConsume: b.N messages (64 keys) posted by the webhook sink (16 requests in
// flight) into PostgreSQL, through the handler and the inbox, or through a plain handler
// that commits one INSERT per request before its 204: one that verifies nothing ("plain"),
// and the same consumer without the inbox ("verified": it reads the body and checks the
// Standard Webhooks signature and timestamp, as any receiver must).
func BenchmarkConsume(b *testing.B) {
	keys := make([]string, 0, 1024)
	for i := range cap(keys) {
		keys = append(keys, fmt.Sprint("k", i%64))
	}
	run := func(b *testing.B, e *env, h http.Handler) {
		srv := httptest.NewServer(h)
		b.Cleanup(srv.Close)
		sk := newSink(b, srv.URL, []string{secret})
		b.ResetTimer()
		begin := time.Now()
		for left := b.N; left > 0; left -= len(keys) {
			recs := records(keys[:min(left, len(keys))]...)
			for i, err := range sk.Publish(context.Background(), recs) {
				if err != nil {
					b.Fatalf("message %d: %v", i, err)
				}
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(begin).Seconds(), "msgs/s")
	}
	// apply is the plain loops' effect: one INSERT committed before the 204.
	apply := func(e *env, w http.ResponseWriter, r *http.Request) {
		err := pgx.BeginFunc(r.Context(), e.pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(r.Context(), `INSERT INTO `+e.effects+` (message_id) VALUES ($1)`, r.Header.Get("Ce-Id"))
			return err
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
	b.Run("inbox", func(b *testing.B) {
		e := newEnv(b, inbox.Config{})
		h, err := webhookinbox.New(webhookinbox.Config{Inbox: e.in, Handler: e.insert, Secrets: []string{secret},
			Logger: logtest.NewLevel(b, slog.LevelWarn)})
		if err != nil {
			b.Fatal(err)
		}
		run(b, e, h)
	})
	b.Run("verified", func(b *testing.B) {
		e := newEnv(b, inbox.Config{})
		run(b, e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if err := webhook.Verify(secret, r.Header, body, 0); err != nil {
				http.Error(w, err.Error(), http.StatusUnauthorized)
				return
			}
			apply(e, w, r)
		}))
	})
	b.Run("plain", func(b *testing.B) {
		e := newEnv(b, inbox.Config{})
		run(b, e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { apply(e, w, r) }))
	})
}
