// Package webhook is the HTTP webhook sink: it POSTs each outbox message to an HTTP endpoint,
// signed the Standard Webhooks way, and reports it delivered once the endpoint answered 2xx.
// Receivers check requests with Verify.
//
// # Configuration
//
//	s, err := webhook.New(ctx, webhook.Config{
//		URL: "https://hooks.example.com/outbox",           // every topic not in URLs
//		URLs: map[string]string{                            // per-topic endpoints
//			"billing.invoice.paid": "https://billing.example.com/events",
//		},
//		Secrets: []string{os.Getenv("WEBHOOK_SECRET")},     // "whsec_<base64>" or raw
//		Headers: map[string]string{"Authorization": "Bearer " + os.Getenv("HOOK_TOKEN")},
//		Timeout:        10 * time.Second,                  // per request (default)
//		MaxConcurrency: 16,                                // requests in flight (default)
//		Source:         "orders-service",                  // CloudEvents source
//	})
//
// A topic with no endpoint (not in URLs, and URL unset) fails permanently. Config.Client
// replaces the HTTP client (proxies, mTLS, tracing transports).
//
// # Envelope
//
// Requests follow the CloudEvents HTTP binding in binary content mode: the body is the
// payload, as is, and the attributes are headers:
//
//	ce-id           message id (UUIDv7)
//	ce-source       Config.Source
//	ce-specversion  1.0
//	ce-type         the message type (the topic when empty)
//	ce-subject      the key (absent when empty)
//	ce-time         created_at, RFC 3339
//	ce-outboxseq    Record.Seq in decimal, the message's position in its key's order (absent when <= 0)
//	Content-Type    the user's content-type header (datacontenttype); absent without one
//
// As the binding requires, ce- values are percent-encoded: space, '"', '%' and every byte
// outside printable ASCII become %XX (decode with url.PathUnescape). The user's other headers
// are sent as they are. A message with a header the sink, HTTP or a broker owns (Host,
// Content-Length, Connection and the other hop-by-hop headers, webhook-*, ce-*, Nats-*, ...:
// the list of sink.CheckHeaders) fails permanently, as does a header name or value that HTTP
// cannot carry; Config.Headers take precedence over the user's headers.
//
// Every request also carries Outbox-Attempt (HeaderAttempt): "1" when, as far as the sink
// knows, it is the message's first send (the relay counted no failed attempt and this sink
// has not sent it before without an answer that settled it, a 2xx or a permanent status),
// and otherwise at least the attempt's number. Receivers may treat it as a broker's
// redelivery flag (inbox/webhookinbox counts deliveries from 2 on); it is a lower bound,
// since a relay that crashed after sending leaves no trace of it. A message header of that
// name fails permanently.
//
// # Signatures (Standard Webhooks)
//
// With Config.Secrets set, every request carries
//
//	webhook-id         the message id: stable across retries, the receiver's dedupe key
//	webhook-timestamp  Unix seconds of this attempt
//	webhook-signature  "v1," + base64(HMAC-SHA256(key, id + "." + timestamp + "." + body))
//
// as specified at https://www.standardwebhooks.com/, so the receiver can use any Standard
// Webhooks library, or Verify. A secret "whsec_<base64>" uses the decoded bytes as the key,
// as those libraries do; any other string is used as the key byte for byte (for
// standardwebhooks.NewWebhook on the receiver, pass the whsec_ form, or NewWebhookRaw). To
// rotate, configure the new and the old secret: each request then carries both signatures,
// space-separated, and receivers accept either until they have switched.
//
// # Responses and errors
//
//	2xx                    acknowledged
//	401, 403               unavailable: the endpoint refuses the credentials (Config.Headers,
//	                       the signature secrets); logged at ERROR, and no message is at fault
//	408, 429, 502, 503, 504
//	                       unavailable: the endpoint or its gateway is down, overloaded or
//	                       rate-limiting
//	425, 500, other 5xx    retryable and counted: a 500 may be this message crashing the
//	                       handler, and reaches the dead-letter table after max_attempts
//	3xx                    permanent: redirects are not followed, since that would re-send
//	                       the signed payload somewhere nobody configured; the error names
//	                       the target's scheme and host, so the URL can be fixed
//	other 4xx              permanent, with the start of the response body
//	no response            unavailable: connection refused or reset, DNS and TLS errors,
//	                       Config.Timeout, the Publish context ending, the sink closed
//
// Unavailable errors are wrapped with sink.Unavailable: the relay pauses the sink and
// probes it without spending the messages' attempts, so an endpoint down for any length of
// time dead-letters nothing. A retryable or unavailable response with Retry-After (seconds
// or HTTP date) is a *RetryAfterError carrying the delay. An endpoint cannot report a
// duplicate in HTTP, so the sink never returns sink.Duplicate; receivers dedupe by ce-id.
// Nothing is sent before the first message, so New cannot check the credentials: a refusal
// shows on the first Publish, as above.
//
// Status errors are *StatusError values (wrapped by sink.Permanent when permanent). The
// response body is quoted up to 256 bytes, with control characters replaced; bodies are
// always drained (up to 64 KiB, to reuse the connection) and closed. Errors and logs name an
// endpoint by scheme and host only, since webhook URLs often carry tokens; the secrets,
// Config.Headers values and token-like parts of the URLs are removed from quoted bodies too.
//
// # Concurrency and order
//
// Publish sends a batch concurrently, at most Config.MaxConcurrency requests at once across
// the sink, except that messages of one key go one after the other in slice order, each
// after the previous one was acknowledged. After a retryable failure the rest of that key's
// messages in the batch are not sent (they fail like it), so a later message never
// overtakes an earlier one; a permanent failure holds nothing back, as the failed message
// goes to the dead-letter table. When the Publish context ends, requests in flight are
// canceled and unsent messages fail with the context's error.
package webhook
