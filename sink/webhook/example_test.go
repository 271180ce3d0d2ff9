package webhook_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink/webhook"
)

// A relay-side sink posting to a receiver that checks the signature with Verify.
func Example() {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // share it with the receiver

	// The receiving service.
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "reading body", http.StatusBadRequest)
			return
		}
		// Verify before trusting anything in the request.
		if err := webhook.Verify(secret, r.Header, body, 5*time.Minute); err != nil {
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		// Webhook-Id (= ce-id) is the message id: dedupe on it, delivery is at least once.
		// CloudEvents header values are percent-encoded.
		subject, _ := url.PathUnescape(r.Header.Get("Ce-Subject"))
		fmt.Println(r.Header.Get("Ce-Type"), subject, r.Header.Get("Content-Type"), string(body))
		w.WriteHeader(http.StatusNoContent) // any 2xx acknowledges
	}))
	defer receiver.Close()

	// The relay's sink.
	ctx := context.Background()
	s, err := webhook.New(ctx, webhook.Config{
		URL:     receiver.URL + "/events",
		Secrets: []string{secret},
		Source:  "orders-service",
		Headers: map[string]string{"Authorization": "Bearer 7f3c..."},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	res := s.Publish(ctx, []*outbox.Record{{
		Message: outbox.Message{
			ID:      outbox.NewID(),
			Topic:   "orders.created",
			Type:    "com.example.order.created",
			Key:     "order 42",
			Payload: []byte(`{"order_id":42}`),
			Headers: map[string]string{"content-type": "application/json"},
		},
		Seq:       1,
		CreatedAt: time.Now(),
	}})
	fmt.Println("acknowledged:", res[0] == nil)
	// Output:
	// com.example.order.created order 42 application/json {"order_id":42}
	// acknowledged: true
}

// Sign computes the Standard Webhooks signature; this is the specification's test vector.
func ExampleSign() {
	sig, err := webhook.Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
		time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sig)
	// Output: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
}
