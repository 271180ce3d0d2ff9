// Package sqlident validates and quotes SQL identifiers that come from configuration.
//
// Identifiers are never concatenated raw into SQL: a name is accepted only if it matches a
// conservative grammar (letters, digits and underscores, not starting with a digit, optionally
// schema-qualified), and it is always emitted double-quoted.
package sqlident

import (
	"errors"
	"fmt"
	"strings"
)

// MaxBaseLen is the longest table name accepted: derived names (name_dead, name_migrations,
// name_key_idx...) must stay within PostgreSQL's 63-byte identifier limit.
const MaxBaseLen = 48

// ErrInvalid is returned (wrapped) for any identifier that fails validation.
var ErrInvalid = errors.New("invalid SQL identifier")

// Table is a validated, optionally schema-qualified table name.
type Table struct {
	Schema string
	Name   string
}

// Parse validates s ("name" or "schema.name").
func Parse(s string) (Table, error) {
	parts := strings.Split(s, ".")
	var t Table
	switch len(parts) {
	case 1:
		t.Name = parts[0]
	case 2:
		t.Schema, t.Name = parts[0], parts[1]
		if err := validPart(t.Schema, 63); err != nil {
			return Table{}, fmt.Errorf("%w: schema %q: %s", ErrInvalid, s, err)
		}
	default:
		return Table{}, fmt.Errorf("%w: %q: at most one dot (schema.table) is allowed", ErrInvalid, s)
	}
	if err := validPart(t.Name, MaxBaseLen); err != nil {
		return Table{}, fmt.Errorf("%w: table %q: %s", ErrInvalid, s, err)
	}
	return t, nil
}

func validPart(p string, maxLen int) error {
	if p == "" {
		return errors.New("empty name")
	}
	if len(p) > maxLen {
		return fmt.Errorf("longer than %d characters", maxLen)
	}
	for i, r := range p {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return fmt.Errorf("character %q not allowed (use letters, digits and underscores, not starting with a digit)", r)
		}
	}
	return nil
}

// String returns the unquoted name as configured.
func (t Table) String() string {
	if t.Schema == "" {
		return t.Name
	}
	return t.Schema + "." + t.Name
}

// Quoted returns the double-quoted name, safe to embed in PostgreSQL and SQLite SQL.
func (t Table) Quoted() string {
	if t.Schema == "" {
		return `"` + t.Name + `"`
	}
	return `"` + t.Schema + `"."` + t.Name + `"`
}

// Derived returns a sibling table in the same schema named Name+suffix.
func (t Table) Derived(suffix string) Table {
	return Table{Schema: t.Schema, Name: t.Name + suffix}
}

// QuotedName returns only the quoted last part (for index names, which take no schema).
func (t Table) QuotedName() string { return `"` + t.Name + `"` }
