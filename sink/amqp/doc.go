// Package amqp is the RabbitMQ (AMQP 0-9-1) sink: it publishes outbox messages to an
// exchange with publisher confirms and reports a message as delivered only once the broker
// confirmed it and routed it to at least one queue.
//
// # Configuration
//
//	s, err := amqp.New(ctx, amqp.Config{
//		URL:              "amqp://app:" + password + "@rabbitmq:5672/prod",
//		Source:           "orders-service",
//		Exchange:         "events",
//		RoutingKeyPrefix: "orders.", // topic created → routing key orders.created
//		// An exact routing key for one topic, without the prefix.
//		RoutingKeys: map[string]string{"audit": "audit-log"},
//		// Declared on every connection; durable unless Transient.
//		DeclareExchange: &amqp.Exchange{Kind: "topic"},
//	})
//
// The password in the URL is never logged (connection logs show the URL redacted).
//
// The same settings in the relay's YAML use the snake_case names: url, exchange,
// routing_key_prefix, routing_keys, declare_exchange (name, kind, transient), source,
// connection_name, publish_timeout, connect_timeout, heartbeat, reconnect_wait and
// max_message_bytes.
//
// # Routing
//
// Every message goes to Config.Exchange with routing key RoutingKeys[topic] when the topic
// is mapped, else RoutingKeyPrefix + topic. The default exchange ("") routes to the queue
// named like the routing key. Queues and bindings are the operator's: the sink declares
// at most the exchange.
//
// Messages are published with the mandatory flag. A message no queue is bound for is
// returned by the broker (basic.return), which acknowledges it all the same; the sink
// reports it as failed, with a retryable error wrapping ErrUnroutable that names the
// exchange and routing key, so that nothing is lost while an operator binds a queue. The
// relay retries it with backoff and moves it to the dead-letter table after its maximum
// attempts. An unroutable message counts as the message's failure, not the sink's
// (sink.Unavailable): a routing key without a queue concerns one topic, and pausing the
// sink for it would hold back every other topic.
//
// # Envelope
//
// Messages use the CloudEvents AMQP binding in binary mode: the body is the payload, the
// content-type property is datacontenttype, and the other attributes are application
// properties (the headers table) as strings:
//
//	cloudEvents:id           message id (UUIDv7); also the message-id property
//	cloudEvents:source       Config.Source; also the app-id property
//	cloudEvents:specversion  1.0
//	cloudEvents:type         the message type (the topic when empty); also the type property
//	cloudEvents:subject      the key (absent when empty)
//	cloudEvents:time         created_at, RFC 3339 with nanoseconds; the timestamp property
//	                         holds it in seconds
//	cloudEvents:outboxseq    Record.Seq in decimal, the message's position in its key's order (absent when <= 0)
//	content-type property    the user's content-type header (datacontenttype)
//
// The user's other headers are copied into the headers table as strings. A message with a
// header every sink refuses (sink.CheckHeaders) fails permanently: among them the ones
// RabbitMQ acts on, CC and BCC (sender-selected routing), x-death and its family, x-delay.
// Messages are persistent (delivery mode 2).
//
// # Delivery and order
//
// The sink publishes on one confirm-mode channel. Publish sends the whole batch without
// waiting between messages and then waits for the confirmations, so a batch costs about one
// round trip plus the broker's disk write. A confirmed persistent message routed to durable
// queues is on disk (RabbitMQ confirms after fsync; for quorum queues, after a majority).
//
// Messages of a batch are sent in order on one channel, so each queue stores them in that
// order. When the channel or the connection closes during a batch, the rest of the batch is
// not sent, so that no later message of a key can be stored ahead of an earlier one that was
// lost; the messages still waiting for a confirmation fail as unavailable (some may have been
// stored: the relay's retry then makes a duplicate, which consumers drop by message id).
//
// # Errors
//
//	permanent    payload larger than Config.MaxMessageBytes (checked before sending)
//	permanent    routing key or header name longer than 255 bytes, content type longer
//	             than 255 bytes (AMQP short strings)
//	permanent    the broker closed the channel because a message exceeded its
//	             max_message_size (406): messages of that size; the rest of the batch is
//	             unavailable
//	retryable    unroutable (basic.return): ErrUnroutable; counted toward the attempts
//	retryable    any other broker closure of the channel (406 PRECONDITION_FAILED and the
//	             like), which may be the message's fault; counted
//	unavailable  nacked (a full queue with x-overflow=reject-publish, a broker failing to
//	             store): ErrNacked, backpressure rather than the message's fault
//	unavailable  the exchange does not exist (404), no write permission (403), the
//	             broker shutting down (320), 506, 530 and 541 closures, a channel or
//	             connection closed by the network or the library, no confirmation within
//	             PublishTimeout or before ctx ended, not connected (ErrNotConnected), the
//	             broker blocking publishers (memory or disk alarm), the sink closed
//	             (ErrClosed)
//
// Unavailable errors are wrapped with sink.Unavailable: the relay pauses the sink and
// spends no attempt of the messages, so an outage of any length dead-letters nothing.
// RabbitMQ has no deduplication that a publisher confirm could report, so the sink never
// returns sink.Duplicate; consumers dedupe by message id.
//
// An oversized message makes RabbitMQ close the channel, which fails every other message in
// flight on it, so set MaxMessageBytes to the broker's max_message_size to have such
// messages refused before they are sent.
//
// # Outages
//
// The sink watches its connection and channel (NotifyClose). When either closes, messages
// in flight fail as unavailable and the sink redials in the background, with exponential
// backoff from Config.ReconnectWait up to 10s, declaring the exchange again. While it is
// down, Publish fails at once with Unavailable errors wrapping ErrNotConnected instead of
// waiting, and publishing resumes by itself after the reconnect. New fails only when the
// broker refuses the connection (credentials, with an error wrapping ErrAuth; virtual host;
// an exchange declaration that conflicts); when RabbitMQ is unreachable, New returns a sink
// that keeps trying. Credentials refused after New (the password changed on the broker)
// are logged at ERROR on every redial, which goes on until the broker accepts them. No
// Publish call waits longer than Config.PublishTimeout or past its context.
package amqp
