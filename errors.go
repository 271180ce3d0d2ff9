package outbox

import (
	"errors"
	"fmt"
)

// ErrInvalidMessage is wrapped by every message validation error.
var ErrInvalidMessage = errors.New("outbox: invalid message")

// ErrUnsupportedTx is returned when Enqueue is given something that is neither a pgx
// transaction nor a *sql.Tx.
var ErrUnsupportedTx = errors.New("outbox: unsupported transaction type")

// ErrInvalidConfig is wrapped by configuration errors; the message names the field.
var ErrInvalidConfig = errors.New("outbox: invalid configuration")

// ValidationError describes why a message was refused. It wraps ErrInvalidMessage.
type ValidationError struct {
	Index  int    // position of the message in the Enqueue call
	Field  string // topic, key, type, payload or headers
	Reason string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("outbox: invalid message %d: %s %s", e.Index, e.Field, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidMessage) true.
func (e *ValidationError) Unwrap() error { return ErrInvalidMessage }

// ConfigError names the configuration field that is wrong. It wraps ErrInvalidConfig.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("outbox: invalid configuration: %s: %s", e.Field, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidConfig) true.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }
