package config

import (
	"fmt"
	"reflect"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/internal/sqlident"
)

// AdminInbox names a consumer's inbox (package inbox) on the outbox's database, for the admin
// API's GET /api/v1/inboxes.
type AdminInbox struct {
	// Table is the inbox's processed-ids table (inbox.Config.Table). Default "inbox".
	Table string `yaml:"table"`
	// Consumer is the consumer's name (inbox.Config.Consumer). Required.
	Consumer string `yaml:"consumer"`
}

// applyInboxes sets admin.inboxes from a YAML sequence of {table, consumer} mappings.
func (c *Config) applyInboxes(f reflect.Value, val *yaml.Node, path string) error {
	if val.Kind != yaml.SequenceNode {
		return &outbox.ConfigError{Field: path, Reason: fmt.Sprintf("line %d: must be a list of {table: TABLE, consumer: NAME}", val.Line)}
	}
	out := make([]AdminInbox, 0, len(val.Content))
	for i, item := range val.Content {
		field := fmt.Sprintf("%s[%d]", path, i)
		item, err := resolve(item, field)
		if err != nil {
			return err
		}
		if item.Kind != yaml.MappingNode {
			return &outbox.ConfigError{Field: field, Reason: fmt.Sprintf("line %d: must be a mapping {table: TABLE, consumer: NAME}", item.Line)}
		}
		in := AdminInbox{Table: inbox.DefaultTable}
		if err := c.applyMapping(reflect.ValueOf(&in).Elem(), item, field+"."); err != nil {
			return err
		}
		out = append(out, in)
	}
	f.Set(reflect.ValueOf(out))
	return nil
}

// validateInboxes checks admin.inboxes as inbox.New would: a valid table (not qualified with
// SQLite), a consumer of printable UTF-8 within inbox.MaxConsumerBytes, no inbox twice.
func (c *Config) validateInboxes() error {
	db, _ := ParseDatabaseURL(string(c.DatabaseURL)) // checked before
	seen := map[AdminInbox]bool{}
	for i, in := range c.Admin.Inboxes {
		field := fmt.Sprintf("admin.inboxes[%d].", i)
		t, err := sqlident.Parse(in.Table)
		switch {
		case err != nil:
			return invalid(field+"table", "%s", strings.TrimPrefix(strings.TrimPrefix(err.Error(), sqlident.ErrInvalid.Error()+": "), "table "))
		case db.Dialect == outbox.SQLite && t.Schema != "":
			return invalid(field+"table", "%q: SQLite tables cannot be schema-qualified", in.Table)
		case in.Consumer == "":
			return invalid(field+"consumer", "required (the inbox.Config.Consumer of the consumer)")
		case len(in.Consumer) > inbox.MaxConsumerBytes:
			return invalid(field+"consumer", "longer than %d bytes", inbox.MaxConsumerBytes)
		case !utf8.ValidString(in.Consumer) || strings.ContainsFunc(in.Consumer, func(r rune) bool { return !unicode.IsPrint(r) }):
			return invalid(field+"consumer", "must be printable UTF-8")
		case seen[in]:
			return invalid(field+"consumer", "%q of table %s is listed twice", in.Consumer, in.Table)
		}
		seen[in] = true
	}
	return nil
}
