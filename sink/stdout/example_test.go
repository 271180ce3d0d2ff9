package stdout_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink/stdout"
)

func Example() {
	s := stdout.New(stdout.Config{Writer: os.Stdout})
	defer s.Close()

	created := time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	msgs := []*outbox.Record{
		{
			Message: outbox.Message{
				ID:      uuid.MustParse("0195a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"),
				Topic:   "orders",
				Key:     "order-1",
				Type:    "order.created",
				Payload: []byte(`{"total": 12}`),
				Headers: map[string]string{"content-type": "application/json"},
			},
			Seq:       1,
			CreatedAt: created,
		},
		{
			Message: outbox.Message{
				ID:      uuid.MustParse("0195a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5c"),
				Topic:   "thumbnails",
				Payload: []byte{0x89, 'P', 'N', 'G'},
			},
			Seq:       2,
			CreatedAt: created,
		},
	}
	for i, err := range s.Publish(context.Background(), msgs) {
		if err != nil {
			fmt.Println("message", i, "failed:", err)
		}
	}
	// Output:
	// {"id":"0195a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b","topic":"orders","key":"order-1","type":"order.created","seq":1,"created_at":"2025-03-14T15:09:26Z","headers":{"content-type":"application/json"},"payload":{"total":12}}
	// {"id":"0195a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5c","topic":"thumbnails","key":"","type":"thumbnails","seq":2,"created_at":"2025-03-14T15:09:26Z","payload_base64":"iVBORw=="}
}
