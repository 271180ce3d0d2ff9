package dialect

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// PauseKind is what an operator pause holds: a topic or a sink.
type PauseKind string

// The kinds of pause.
const (
	// PauseTopic holds the messages of one topic: relays do not publish them until it resumes.
	PauseTopic PauseKind = "topic"
	// PauseSink holds every message routed to one sink (a route's sink name, or the relay's
	// one sink name).
	PauseSink PauseKind = "sink"
)

// Pause is an operator's pause of a topic or a sink, kept in the table's pauses table so that
// every relay of the table honours it.
type Pause struct {
	Kind     PauseKind
	Name     string    // the topic or the sink
	Reason   string    // free text, "" when none was given
	PausedBy string    // who paused it (the admin API's caller, the CLI's user), "" when unknown
	PausedAt time.Time // set by the store
}

// Bounds of a pause's texts, in bytes: its name (MariaDB's topic column holds 255
// characters), its reason and its author.
const (
	MaxPauseName = 255
	MaxPauseText = 1000
)

// ParsePauseKind returns the kind named s ("topic" or "sink").
func ParsePauseKind(s string) (PauseKind, error) {
	switch k := PauseKind(s); k {
	case PauseTopic, PauseSink:
		return k, nil
	}
	return "", fmt.Errorf("pause: kind %q is neither %q nor %q", s, PauseTopic, PauseSink)
}

// Validate reports a pause a Pauser refuses: an unknown kind, an empty name, or a text over
// its bound (MaxPauseName, MaxPauseText).
func (p Pause) Validate() error {
	if _, err := ParsePauseKind(string(p.Kind)); err != nil {
		return err
	}
	switch {
	case p.Name == "":
		return errors.New("pause: name is required")
	case len(p.Name) > MaxPauseName:
		return fmt.Errorf("pause: name is limited to %d bytes", MaxPauseName)
	case len(p.Reason) > MaxPauseText || len(p.PausedBy) > MaxPauseText:
		return fmt.Errorf("pause: reason and paused_by are limited to %d bytes", MaxPauseText)
	}
	return nil
}

// Errors of the Pauser methods.
var (
	// ErrNoPausesTable is returned (wrapped) by Pauser methods when the table's pauses table
	// does not exist: the schema predates it, run the migrations.
	ErrNoPausesTable = errors.New("dialect: the pauses table is missing (run migrate)")
	// ErrAlreadyPaused is returned (wrapped) by Pause when the topic or sink is paused already.
	ErrAlreadyPaused = errors.New("dialect: already paused")
	// ErrNotPaused is returned (wrapped) by Resume when the topic or sink is not paused.
	ErrNotPaused = errors.New("dialect: not paused")
)

// Pauser is implemented by stores that keep operator pauses: what the admin API's and the
// outbox command's pause and resume write, and what relays read (relay.Config.Pauses) to hold
// the messages of a paused topic or sink until it resumes.
type Pauser interface {
	// Pause records p (PausedAt is the store's time). It returns ErrAlreadyPaused when p's
	// kind and name are paused already (the first pause is kept unchanged).
	Pause(ctx context.Context, p Pause) error
	// Resume removes the pause of kind and name. It returns ErrNotPaused when there is none.
	Resume(ctx context.Context, kind PauseKind, name string) error
	// ListPauses returns every pause, by kind then name (byte order).
	ListPauses(ctx context.Context) ([]Pause, error)
}
