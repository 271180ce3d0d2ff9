package mqtt

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/eclipse/paho.golang/packets"

	"github.com/outboxgo/outbox/sink"
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

// pubackErr classifies a failure PUBACK. Permanent: what the broker refuses about the
// message itself (its topic name, its size, its payload format). Retryable: everything an
// operator or time can fix, not authorized included (an ACL can be corrected; the relay
// dead-letters the message after its maximum attempts).
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
