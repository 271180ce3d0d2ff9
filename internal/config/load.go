package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/outboxgo/outbox"
)

// EnvPrefix starts the environment variable of every setting.
const EnvPrefix = "OUTBOX_"

// EnvConfigFile names the YAML file to read when LoadOptions.File is empty.
const EnvConfigFile = "OUTBOX_CONFIG"

// Kinds of setting values.
const (
	KindString   = "string"
	KindInt      = "int"
	KindDuration = "duration"
	KindList     = "list"
)

// Setting describes one configuration value and its name in each layer.
type Setting struct {
	Path    string // YAML path: "poll.batch_size"
	Env     string // environment variable: "OUTBOX_POLL_BATCH_SIZE"
	Flag    string // command-line flag without dashes: "poll-batch-size"
	Kind    string // KindString, KindInt, KindDuration or KindList
	Default string // the default, formatted as it would be written
	Doc     string // one-line description
	index   []int
}

var durationType = reflect.TypeFor[time.Duration]()

var settings = sync.OnceValue(func() []Setting {
	var out []Setting
	def := reflect.ValueOf(Default())
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := f.Tag.Get("yaml")
			path := prefix + name
			idx := append(slices.Clone(index), i)
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, path+".", idx)
				continue
			}
			s := Setting{
				Path:  path,
				Env:   EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_")),
				Flag:  strings.NewReplacer(".", "-", "_", "-").Replace(path),
				Kind:  kindOf(f.Type),
				Doc:   f.Tag.Get("doc"),
				index: idx,
			}
			s.Default = format(def.FieldByIndex(idx))
			out = append(out, s)
		}
	}
	walk(def.Type(), "", nil)
	return out
})

func kindOf(t reflect.Type) string {
	switch {
	case t == durationType:
		return KindDuration
	case t.Kind() == reflect.String:
		return KindString
	case t.Kind() == reflect.Int:
		return KindInt
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return KindList
	}
	panic("config: unsupported field type " + t.String())
}

// Settings lists every setting in declaration order.
func Settings() []Setting { return slices.Clone(settings()) }

// Lookup returns the setting at a YAML path.
func Lookup(path string) (Setting, bool) {
	for _, s := range settings() {
		if s.Path == path {
			return s, true
		}
	}
	return Setting{}, false
}

func format(v reflect.Value) string {
	switch v.Interface().(type) {
	case time.Duration:
		return formatDuration(v.Interface().(time.Duration))
	case []string:
		return strings.Join(v.Interface().([]string), ",")
	case int:
		return strconv.Itoa(int(v.Int()))
	default:
		return v.String()
	}
}

// formatDuration is Duration.String without zero trailing units: 5m, not 5m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// Get returns the value of the setting at path, formatted as it would be written.
func (c *Config) Get(path string) (string, bool) {
	s, ok := Lookup(path)
	if !ok {
		return "", false
	}
	return format(reflect.ValueOf(c).Elem().FieldByIndex(s.index)), true
}

// Set parses value for the setting at path (as from an environment variable or flag) and
// stores it. A list is comma-separated.
func (c *Config) Set(path, value string) error {
	return c.set(path, value, "")
}

func (c *Config) set(path, value, from string) error {
	s, ok := Lookup(path)
	if !ok {
		return &outbox.ConfigError{Field: path, Reason: "unknown setting" + from}
	}
	return c.setField(s, value, from)
}

func (c *Config) setField(s Setting, value, from string) error {
	f := reflect.ValueOf(c).Elem().FieldByIndex(s.index)
	switch s.Kind {
	case KindString:
		f.SetString(value)
	case KindInt:
		n, err := strconv.ParseInt(strings.TrimSpace(value), 10, strconv.IntSize)
		if err != nil {
			return &outbox.ConfigError{Field: s.Path, Reason: fmt.Sprintf("%q is not an integer%s", value, from)}
		}
		f.SetInt(n)
	case KindDuration:
		d, err := time.ParseDuration(strings.TrimSpace(value))
		if err != nil {
			return &outbox.ConfigError{Field: s.Path,
				Reason: fmt.Sprintf("%q is not a duration (write e.g. 250ms, 5s, 1m30s)%s", value, from)}
		}
		f.SetInt(int64(d))
	case KindList:
		var list []string
		for item := range strings.SplitSeq(value, ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = append(list, item)
			}
		}
		f.Set(reflect.ValueOf(list))
	}
	return nil
}

// ApplyEnv sets every setting whose OUTBOX_* variable getenv returns non-empty.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	for _, s := range settings() {
		if v := getenv(s.Env); v != "" {
			if err := c.setField(s, v, " (from "+s.Env+")"); err != nil {
				return err
			}
		}
	}
	return nil
}

// ApplyYAML sets the settings present in the YAML document data. Keys that name no setting
// are an error naming the key's path; so is a value of the wrong shape or type.
func (c *Config) ApplyYAML(data []byte) error {
	return c.applyYAML(data, "")
}

// fileField names file-level problems (syntax errors, several documents) in a ConfigError.
const fileField = "config file"

func (c *Config) applyYAML(data []byte, name string) error {
	where := ""
	if name != "" {
		where = name + ": "
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file
		}
		return &outbox.ConfigError{Field: fileField, Reason: where + err.Error()}
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return &outbox.ConfigError{Field: fileField, Reason: where + err.Error()}
	default:
		return &outbox.ConfigError{Field: fileField, Reason: where + "holds more than one YAML document"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil
		}
		root = root.Content[0]
	}
	root, err := resolve(root, "")
	if err != nil {
		return err
	}
	if isNull(root) {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		return &outbox.ConfigError{Field: fileField, Reason: fmt.Sprintf("%sline %d: the top level must be a mapping of settings", where, root.Line)}
	}
	return c.applyMapping(reflect.ValueOf(c).Elem(), root, "", nil)
}

// resolve follows alias nodes.
func resolve(n *yaml.Node, path string) (*yaml.Node, error) {
	for range 100 {
		if n.Kind != yaml.AliasNode {
			return n, nil
		}
		if n.Alias == nil {
			break
		}
		n = n.Alias
	}
	return nil, &outbox.ConfigError{Field: cmpPath(path), Reason: "unresolvable alias"}
}

func cmpPath(path string) string {
	if path == "" {
		return fileField
	}
	return path
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func (c *Config) applyMapping(v reflect.Value, m *yaml.Node, prefix string, index []int) error {
	t := v.Type()
	seen := make(map[string]bool, len(m.Content)/2)
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, err := resolve(m.Content[i], prefix)
		if err != nil {
			return err
		}
		if k.Kind != yaml.ScalarNode {
			return &outbox.ConfigError{Field: cmpPath(strings.TrimSuffix(prefix, ".")),
				Reason: fmt.Sprintf("line %d: keys must be plain names", k.Line)}
		}
		path := prefix + k.Value
		if seen[k.Value] {
			return &outbox.ConfigError{Field: path, Reason: fmt.Sprintf("duplicate key (line %d)", k.Line)}
		}
		seen[k.Value] = true
		fi := -1
		for j := range t.NumField() {
			if t.Field(j).Tag.Get("yaml") == k.Value {
				fi = j
				break
			}
		}
		if fi < 0 {
			return &outbox.ConfigError{Field: path, Reason: fmt.Sprintf("unknown key (line %d)%s", k.Line, suggest(t, k.Value, prefix))}
		}
		val, err := resolve(m.Content[i+1], path)
		if err != nil {
			return err
		}
		if isNull(val) {
			continue // "key:" with no value leaves the setting as it was
		}
		idx := append(slices.Clone(index), fi)
		field := t.Field(fi)
		if field.Type.Kind() == reflect.Struct {
			if val.Kind != yaml.MappingNode {
				return &outbox.ConfigError{Field: path, Reason: fmt.Sprintf("line %d: must be a mapping of settings", val.Line)}
			}
			if err := c.applyMapping(v.Field(fi), val, path+".", idx); err != nil {
				return err
			}
			continue
		}
		s, _ := Lookup(path)
		from := fmt.Sprintf(" (line %d)", val.Line)
		switch {
		case s.Kind == KindList && val.Kind == yaml.SequenceNode:
			list := make([]string, 0, len(val.Content))
			for _, item := range val.Content {
				item, err := resolve(item, path)
				if err != nil {
					return err
				}
				if item.Kind != yaml.ScalarNode || isNull(item) {
					return &outbox.ConfigError{Field: path, Reason: fmt.Sprintf("line %d: list items must be strings", item.Line)}
				}
				list = append(list, item.Value)
			}
			v.Field(fi).Set(reflect.ValueOf(list))
		case val.Kind == yaml.ScalarNode:
			if err := c.setField(s, val.Value, from); err != nil {
				return err
			}
		default:
			want := "a single value"
			if s.Kind == KindList {
				want = "a list of strings"
			}
			return &outbox.ConfigError{Field: path, Reason: fmt.Sprintf("line %d: must be %s", val.Line, want)}
		}
	}
	return nil
}

// suggest proposes the known key that key probably meant (other case, dashes).
func suggest(t reflect.Type, key, prefix string) string {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "-", "_")) }
	var known []string
	for j := range t.NumField() {
		name := t.Field(j).Tag.Get("yaml")
		if norm(name) == norm(key) {
			return fmt.Sprintf("; did you mean %s%s?", prefix, name)
		}
		known = append(known, name)
	}
	return "; known keys here: " + strings.Join(known, ", ")
}

// LoadOptions says where Load finds each layer.
type LoadOptions struct {
	// File is the YAML file to read. Empty means $OUTBOX_CONFIG, and no file when that is
	// empty too.
	File string
	// Getenv reads environment variables. Default os.Getenv.
	Getenv func(string) string
	// Flags maps setting paths to the values given on the command line.
	Flags map[string]string
}

// Load builds the configuration from defaults, the YAML file, the environment and the flags,
// in increasing precedence, and validates it. A validation error says which layer set the
// bad value.
func Load(opts LoadOptions) (Config, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	cfg := Default()
	origin := map[string]string{} // setting path → where its value came from
	file := opts.File
	if file == "" {
		file = getenv(EnvConfigFile)
	}
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return cfg, &outbox.ConfigError{Field: fileField, Reason: err.Error()}
		}
		if err := cfg.applyYAML(data, file); err != nil {
			return cfg, err
		}
		before := Default()
		for _, s := range settings() {
			a, _ := before.Get(s.Path)
			b, _ := cfg.Get(s.Path)
			if a != b {
				origin[s.Path] = file
			}
		}
	}
	for _, s := range settings() {
		if v := getenv(s.Env); v != "" {
			if err := cfg.setField(s, v, " (from "+s.Env+")"); err != nil {
				return cfg, err
			}
			origin[s.Path] = s.Env
		}
	}
	// Flags in settings order, so that errors do not depend on map order.
	for _, s := range settings() {
		if v, ok := opts.Flags[s.Path]; ok {
			if err := cfg.setField(s, v, " (from --"+s.Flag+")"); err != nil {
				return cfg, err
			}
			origin[s.Path] = "--" + s.Flag
		}
	}
	for path := range opts.Flags {
		if _, ok := Lookup(path); !ok {
			return cfg, &outbox.ConfigError{Field: path, Reason: "unknown setting"}
		}
	}
	if err := cfg.Validate(); err != nil {
		var ce *outbox.ConfigError
		if errors.As(err, &ce) && origin[ce.Field] != "" {
			return cfg, &outbox.ConfigError{Field: ce.Field, Reason: ce.Reason + " (from " + origin[ce.Field] + ")"}
		}
		return cfg, err
	}
	return cfg, nil
}
