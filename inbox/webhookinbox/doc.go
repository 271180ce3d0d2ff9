// Package webhookinbox is the inbox adapter for webhooks: an http.Handler that receives what
// the webhook sink (sink/webhook) posts, verifies its Standard Webhooks signature and applies
// each message once through package inbox.
//
//	h, err := webhookinbox.New(webhookinbox.Config{
//		Inbox:   in,
//		Handler: handler,
//		Secrets: []string{os.Getenv("WEBHOOK_SECRET")}, // the sink's secrets
//	})
//	http.Handle("/hooks/", http.StripPrefix("/hooks", h)) // topic = path: /hooks/orders.created
//	go h.Run(ctx) // the inbox's redrive and retention; requests need no Run
//
// # Verification
//
// Every request must carry webhook-id, webhook-timestamp and webhook-signature
// (https://www.standardwebhooks.com/). The signatures are checked with the Standard Webhooks
// Go library (github.com/standard-webhooks/standard-webhooks/libraries/go: HMAC-SHA256 over
// id.timestamp.body, constant-time comparison, any of the space-separated signatures), for
// each configured secret: a "whsec_" secret is base64 after the prefix, any other is the key
// byte for byte, as the webhook sink reads them. List several secrets during a rotation. The
// timestamp must be within Tolerance (default 5 minutes) of this machine's clock. A request
// that fails is answered 401 and logged at WARN, never 2xx.
//
// The signature covers the id, the timestamp and the body, not the ce- headers: the
// handler requires ce-id to equal the signed webhook-id, so a replayed body cannot pass for
// a new message (a replay within the tolerance is a Duplicate). The other attributes and
// headers are as trustworthy as the transport: use HTTPS.
//
// # Envelope
//
// The CloudEvents HTTP binding in binary mode, as the sink writes it: ce- headers are the
// attributes (values percent-decoded), Content-Type is datacontenttype, the body is the
// payload. The topic is Config.Topic, or the request path without PathPrefix: the sink
// carries the topic only in its per-topic URL (urls: {orders.created:
// https://host/hooks/orders.created}). The other headers are the user headers (names in lower
// case), except the HTTP and transport ones (Accept, Accept-Encoding, Authorization,
// Connection, Content-Length, Cookie, Expect, Forwarded, Host, the hop-by-hop headers,
// User-Agent, Via, X-Forwarded-*, X-Real-Ip), webhook-*, Outbox-Attempt and the
// IgnoreHeaders (a proxy's, or the sink's Config.Headers). A request that does not decode is
// recorded with inbox.Reject under "webhook:<webhook-id>" (signed, and stable across the
// sender's retries) and answered 2xx.
//
// # Responses
//
//	204  applied, or a Duplicate, Stale, DeadLettered or rejected message (after the commit)
//	503  the handler failed (Retry-After: the inbox's backoff, whole seconds), or the inbox's
//	     database failed (Retry-After: RetryPause)
//	401  missing or bad signature, timestamp outside the tolerance
//	405  not a POST
//	413  body above MaxBodyBytes (default 1 MiB)
//
// # Redelivered and order
//
// HTTP carries no redelivery flag. The webhook sink sends Outbox-Attempt (webhook.HeaderAttempt):
// "1" when, as far as it knows, a request is the message's first. Such a request is delivered
// with Redelivered false, as a broker's first delivery is: counted only if it fails. Every
// other request (a later attempt, or a sender without the header) is delivered with
// Redelivered true, so that a handler that crashes the process is counted and dead-lettered
// in the end; that costs a statement (Attempt's count; with a pgx pool it shares the
// delivery's round trip) and two row writes (the count, and its deletion when applied). The
// header is a lower bound: after a relay crash, the next relay's first send of a message
// says 1 again, and a handler crashing on it is counted from its next send on. The header is
// not signed; only a sender holding the secret reaches the handler, and a false "1" only
// skips a count.
//
// The handler orders nothing across requests: order is the sender's. The webhook sink sends
// a key's messages one at a time, each after the previous one was acknowledged, and after a
// failure it sends none of that key's later messages in the batch. A 503 is, for the sink,
// the endpoint being unavailable: the relay pauses the whole sink and retries after
// Retry-After without spending the message's attempts at the relay (the inbox counts them),
// so a failing message holds back the other keys too until it succeeds or the inbox
// dead-letters it (MaxAttempts requests, then 204). Concurrent requests of one key from
// another sender, or from several relays, are applied in the order they commit.
package webhookinbox
