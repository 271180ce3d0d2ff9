// Package mqtt is the MQTT 5 sink: it publishes outbox messages at QoS 1 and reports a
// message as delivered only once the broker acknowledged it with a successful PUBACK.
//
// # Configuration
//
//	s, err := mqtt.New(ctx, mqtt.Config{
//		Broker:      "tcp://mosquitto:1883", // ssl://, tls:// or mqtts:// for TLS
//		ClientID:    "orders-relay-1",       // unique per relay; default outbox-<random>
//		Username:    "relay",
//		Password:    os.Getenv("MQTT_PASSWORD"),
//		TopicPrefix: "events/",              // orders.created → events/orders/created
//		Source:      "orders-service",
//	})
//
// The same settings in the relay's YAML use the snake_case names: broker, client_id,
// username, password, topic_prefix, topic_separator, source, keep_alive, connect_timeout,
// publish_timeout and reconnect_wait.
//
// # Topics
//
// A message goes to the MQTT topic TopicPrefix + topic, with every "." of the outbox topic
// replaced by Config.TopicSeparator ("/" by default, so that orders.created becomes the
// topic levels orders/created; set "." to keep the topic as it is). A topic that cannot be
// published to fails permanently before anything is sent: empty, a + or # wildcard, longer
// than 65535 bytes, starting with $ (reserved for the broker), or not a valid MQTT string.
//
// # Envelope
//
// Messages use the CloudEvents MQTT binding in binary mode (MQTT 5 only): the payload is the
// message body, datacontenttype is the Content Type property, and the other attributes are
// user properties with their plain names:
//
//	id            message id (UUIDv7)
//	source        Config.Source
//	specversion   1.0
//	type          the message type (the topic when empty)
//	subject       the key (absent when empty)
//	time          created_at, RFC 3339 with nanoseconds
//	outboxseq     Record.Seq in decimal, the message's position in its key's order (absent when <= 0)
//	Content Type  the user's content-type header (datacontenttype)
//
// The user's other headers follow as user properties. The binding reads every user
// property as an attribute named as the property, so a header whose name is not a
// CloudEvents attribute name (lower-case ASCII letters and digits: requestid, not
// X-Request-Id) would make the whole message unreadable as a CloudEvent: such a message
// fails permanently, as does one with a header every sink refuses (sink.CheckHeaders: the
// attribute names themselves, ce-*, Nats-*, ...). Messages are not retained.
//
// MQTT strings must be valid UTF-8 without U+0000, and brokers may treat control
// characters and noncharacters as malformed: Mosquitto then drops the connection, failing
// every other message in flight. The sink therefore refuses such a topic, key, type or
// header permanently before sending.
//
// # Delivery and order
//
// Publish writes the whole batch without waiting between messages, up to the broker's
// Receive Maximum in flight (Mosquitto: 20), and then waits for the PUBACKs. A PUBACK with
// a reason code below 0x80 is success, "no matching subscribers" (0x10) included: MQTT
// keeps nothing for topics nobody subscribes to, so durability depends on the subscribers'
// sessions (persistent sessions with QoS 1 subscriptions), not on the sink.
//
// A batch goes out in order on one connection, so the broker forwards its messages in that
// order. When the connection drops during a batch, the rest of the batch is not sent, so
// that no later message of a key can reach the broker ahead of an earlier one lost with the
// connection. Every connection starts a clean session: messages unacknowledged when a
// connection dropped are reported failed and are not resent by the client; the relay's
// retry sends them again (a consumer may see a duplicate, and drops it by message id).
//
// # Errors
//
//	permanent    invalid topic or string (checked before sending)
//	permanent    packet larger than the broker's Maximum Packet Size (checked before sending)
//	permanent    PUBACK 0x90 topic name invalid, 0x95 packet too large, 0x99 payload
//	             format invalid
//	unavailable  PUBACK 0x87 not authorized (an ACL to fix; no message is at fault), 0x89
//	             server busy, 0x8B server shutting down, 0x96 message rate too high, 0x97
//	             quota exceeded, 0x9C/0x9D use another server: *ReasonCodeError
//	unavailable  connection lost before the PUBACK (ErrConnectionLost, with the broker's
//	             DISCONNECT reason when it sent one), no PUBACK within PublishTimeout or
//	             before ctx ended, not connected (ErrNotConnected), the sink closed (ErrClosed)
//	retryable    PUBACK 0x80, 0x83 and any other failure code (counted toward the attempts:
//	             it may be the message's fault): *ReasonCodeError
//
// Unavailable errors are wrapped with sink.Unavailable: the relay pauses the sink and
// spends no attempt of the messages, so an outage of any length dead-letters nothing. MQTT
// has no deduplication a PUBACK could report, so the sink never returns sink.Duplicate.
//
// # Outages and credentials
//
// The sink keeps one connection. It pings an idle connection every half keep-alive
// interval and counts it dead after 1.5 intervals without a packet from the broker; it also
// counts it dead when a batch's messages stay unacknowledged for the whole PublishTimeout
// (they would hold the Receive Maximum). A dead connection fails its messages in flight as
// unavailable, and the sink redials in the background with exponential backoff from
// Config.ReconnectWait up to 10s. While it is down, Publish fails at once with Unavailable
// errors wrapping ErrNotConnected, and publishing resumes by itself after the reconnect.
// New fails only when the broker refuses the connection for good (bad credentials or not
// authorized, with an error wrapping ErrAuth; client identifier refused, no MQTT 5 or QoS
// 1); when the broker is unreachable, New returns a sink that keeps trying. Credentials
// refused after New are logged at ERROR on every redial, which goes on until the broker
// accepts them. No Publish call waits longer than Config.PublishTimeout or past its context.
//
// # Implementation
//
// The sink speaks the publishing side of MQTT 5 itself on top of paho.golang's packets
// package. paho's client publishes a QoS 1 message by blocking until its PUBACK (its
// asynchronous mode reports no outcome), and after a connection loss its session leaves a
// publish waiting until its timeout; the sink needs a batch written back to back, each
// PUBACK matched to its message, and an immediate failure of everything in flight when the
// connection drops. On Linux the sink acknowledges the broker's TCP segments at once
// (TCP_QUICKACK): brokers that keep Nagle's algorithm on (Mosquitto by default) otherwise
// hold the last PUBACKs of every batch for a 40ms delayed ACK.
package mqtt
