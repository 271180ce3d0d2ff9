package mqtt

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/eclipse/paho.golang/packets"

	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/internal/unavail"
)

// ReasonCodeError is a failure reason code (0x80 and up) the broker answered a PUBLISH with
// (PUBACK) or closed the connection with (DISCONNECT).
type ReasonCodeError struct {
	Code   byte
	Reason string // the broker's reason string, if it sent one
}

func (e *ReasonCodeError) Error() string {
	msg := fmt.Sprintf("reason code 0x%02X (%s)", e.Code, reasonName(e.Code))
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// reasonName names the MQTT 5 reason codes of PUBACK and DISCONNECT.
func reasonName(code byte) string {
	switch code {
	case 0x80:
		return "unspecified error"
	case 0x81:
		return "malformed packet"
	case 0x82:
		return "protocol error"
	case 0x83:
		return "implementation specific error"
	case 0x87:
		return "not authorized"
	case 0x89:
		return "server busy"
	case 0x8B:
		return "server shutting down"
	case 0x8D:
		return "keep alive timeout"
	case 0x8E:
		return "session taken over (another connection with the same client id)"
	case 0x90:
		return "topic name invalid"
	case 0x91:
		return "packet identifier in use"
	case 0x93:
		return "receive maximum exceeded"
	case 0x95:
		return "packet too large"
	case 0x96:
		return "message rate too high"
	case 0x97:
		return "quota exceeded"
	case 0x98:
		return "administrative action"
	case 0x99:
		return "payload format invalid"
	case 0x9C, 0x9D:
		return "use another server"
	case 0x9F:
		return "connection rate exceeded"
	default:
		return "error"
	}
}

// ErrAuth is wrapped by the error New returns when the broker refuses the sink's
// credentials (CONNACK 0x86 bad user name or password, 0x87 not authorized, 0x8C bad
// authentication method): a configuration the sink cannot work with, reported at start
// instead of retried. At runtime (credentials changed on the broker after New) the sink
// keeps redialing, logs every refusal at ERROR, and Publish fails with sink.Unavailable
// errors until the broker accepts them.
var ErrAuth = errors.New("mqtt sink: authentication refused")

// isAuthRefusal reports whether err is a CONNACK refusing the credentials.
func isAuthRefusal(err error) bool {
	var rerr *refusedError
	if !errors.As(err, &rerr) {
		return false
	}
	switch rerr.code {
	case packets.ConnackBadUsernameOrPassword, packets.ConnackNotAuthorized, packets.ConnackBadAuthenticationMethod:
		return true
	}
	return false
}

// sinkWide reports whether a publish failure is the sink's as a whole rather than the
// message's: a PUBACK 0x87 not authorized (an ACL to fix), 0x89 server busy, 0x8B server
// shutting down, 0x96 message rate too high, 0x97 quota exceeded, 0x9C/0x9D use another
// server; and every failure that is not a PUBACK at all: not connected, the connection
// lost before the PUBACK (a DISCONNECT, a reset, a keep-alive timeout), no PUBACK within
// the publish timeout or before the caller's context ended, the sink closed. Other failure
// codes (0x80 unspecified, 0x83 implementation specific...) may be the message's: they are
// retried and counted.
func sinkWide(err error) bool {
	if errors.Is(err, ErrConnectionLost) || errors.Is(err, ErrNotConnected) {
		return true
	}
	var rc *ReasonCodeError
	if !errors.As(err, &rc) {
		return true
	}
	switch rc.Code {
	case 0x87, 0x89, 0x8B, 0x96, 0x97, 0x9C, 0x9D:
		return true
	}
	return false
}

// markUnavailable wraps every sink-wide result of res with sink.Unavailable.
func markUnavailable(res []error) { unavail.Mark(res, sinkWide) }

// pubackErr classifies a failure PUBACK. Permanent: what the broker refuses about the
// message itself (its topic name, its size, its payload format). Retryable: everything an
// operator or time can fix; Publish marks the sink-wide ones (not authorized: an ACL can be
// corrected, and no message is at fault) with sink.Unavailable (see sinkWide).
func pubackErr(code byte, reason, topic string) error {
	rc := &ReasonCodeError{Code: code, Reason: reason}
	switch code {
	case 0x90, 0x95, 0x99:
		return sink.Permanent(fmt.Errorf("mqtt sink: publishing to %q: broker refused the message: %w", topic, rc))
	case 0x87:
		return fmt.Errorf("mqtt sink: publishing to %q: %w (check the broker's ACL for this client); will retry", topic, rc)
	default:
		return fmt.Errorf("mqtt sink: publishing to %q: %w; will retry", topic, rc)
	}
}

// disconnectErr describes a DISCONNECT from the broker.
func disconnectErr(body []byte) error {
	d := &packets.Disconnect{Properties: &packets.Properties{}}
	if len(body) == 0 {
		return errors.New("broker disconnected (normal disconnection)")
	}
	if err := d.Unpack(bytes.NewBuffer(body)); err != nil {
		return fmt.Errorf("broker disconnected (malformed DISCONNECT: %v)", err)
	}
	if d.ReasonCode < 0x80 {
		return fmt.Errorf("broker disconnected (reason code 0x%02X)", d.ReasonCode)
	}
	return fmt.Errorf("broker disconnected: %w", &ReasonCodeError{Code: d.ReasonCode, Reason: d.Properties.ReasonString})
}

// notSent wraps the reason a message was not sent at all.
func notSent(err error) error {
	return fmt.Errorf("mqtt sink: not sent: %w", err)
}

// notConnected is the retryable error for messages not sent while the sink reconnects.
func notConnected(last error) error {
	if last == nil {
		return notSent(ErrNotConnected)
	}
	return fmt.Errorf("mqtt sink: not sent: %w (last error: %v)", ErrNotConnected, last)
}
