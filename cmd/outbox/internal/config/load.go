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
	KindBool     = "bool"
	KindFloat    = "float"
	KindList     = "list"
	// KindMap is a mapping of strings to strings, set in the YAML file only.
	KindMap = "map"
	// KindSinks is the mapping of named sink blocks (sinks), set in the YAML file only.
	KindSinks = "map of sinks"
	// KindRoutes is the list of routes, set in the YAML file only.
	KindRoutes = "list of routes"
	// KindInboxes is the list of inboxes (admin.inboxes), set in the YAML file only.
	KindInboxes = "list of inboxes"
)

// Setting describes one configuration value and its name in each layer.
type Setting struct {
	Path    string // YAML path: "poll.batch_size"
	Env     string // environment variable: "OUTBOX_POLL_BATCH_SIZE"; "" when YAML only
	Flag    string // command-line flag without dashes: "poll-batch-size"; "" when YAML only
	Kind    string // one of the Kind constants
	Default string // the default, formatted as it would be written
	Doc     string // one-line description
	// Secret settings (passwords, signing secrets, header values) are never printed: Get
	// returns them redacted.
	Secret bool
	index  []int
}

// YAMLOnly reports whether the setting can only be set in the YAML file: maps, the named
// sinks and the routes have no environment variable or flag.
func (s Setting) YAMLOnly() bool { return s.Env == "" }

var (
	durationType = reflect.TypeFor[time.Duration]()
	secretType   = reflect.TypeFor[Secret]()
	urlType      = reflect.TypeFor[URL]()
	sinkType     = reflect.TypeFor[Sink]()
	routeType    = reflect.TypeFor[Route]()
	inboxType    = reflect.TypeFor[AdminInbox]()
)

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
				Path:   path,
				Kind:   kindOf(f.Type),
				Doc:    f.Tag.Get("doc"),
				Secret: holdsSecret(f.Type),
				index:  idx,
			}
			switch s.Kind {
			case KindMap, KindSinks, KindRoutes, KindInboxes:
			default:
				s.Env = envName(path)
				s.Flag = strings.NewReplacer(".", "-", "_", "-").Replace(path)
			}
			s.Default = format(def.FieldByIndex(idx), s.Kind)
			out = append(out, s)
		}
	}
	walk(def.Type(), "", nil)
	return out
})

// holdsSecret reports whether t is Secret or a list or map of them.
func holdsSecret(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Slice, reflect.Map:
		return t.Elem() == secretType
	}
	return t == secretType
}

// envName is the environment variable of the setting at path.
func envName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// kindOf returns the kind of a field type; Elem is only called on types that have one.
func kindOf(t reflect.Type) string {
	switch {
	case t == durationType:
		return KindDuration
	case t.Kind() == reflect.String:
		return KindString
	case t.Kind() == reflect.Int:
		return KindInt
	case t.Kind() == reflect.Bool:
		return KindBool
	case t.Kind() == reflect.Float64:
		return KindFloat
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return KindList
	case t.Kind() == reflect.Slice && t.Elem() == routeType:
		return KindRoutes
	case t.Kind() == reflect.Slice && t.Elem() == inboxType:
		return KindInboxes
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String && t.Elem().Kind() == reflect.String:
		return KindMap
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String && t.Elem() == sinkType:
		return KindSinks
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

// format writes v, of the given kind, as it would be written in an environment variable
// (lists comma-separated; maps as k=v pairs, sinks as their names and routes as
// pattern→sink, for comparison and display only).
func format(v reflect.Value, kind string) string {
	switch kind {
	case KindDuration:
		return formatDuration(time.Duration(v.Int()))
	case KindInt:
		return strconv.FormatInt(v.Int(), 10)
	case KindBool:
		return strconv.FormatBool(v.Bool())
	case KindFloat:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case KindList:
		items := make([]string, v.Len())
		for i := range items {
			items[i] = v.Index(i).String()
		}
		return strings.Join(items, ",")
	case KindMap:
		var items []string
		for _, k := range v.MapKeys() {
			items = append(items, k.String()+"="+v.MapIndex(k).String())
		}
		slices.Sort(items)
		return strings.Join(items, ",")
	case KindSinks:
		var names []string
		for _, k := range v.MapKeys() {
			names = append(names, k.String())
		}
		slices.Sort(names)
		return strings.Join(names, ",")
	case KindRoutes:
		items := make([]string, v.Len())
		for i := range items {
			r := v.Index(i).Interface().(Route)
			items[i] = r.Topic + "→" + r.Sink
		}
		return strings.Join(items, ",")
	case KindInboxes:
		items := make([]string, v.Len())
		for i := range items {
			in := v.Index(i).Interface().(AdminInbox)
			items[i] = in.Table + "/" + in.Consumer
		}
		return strings.Join(items, ",")
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

// Get returns the value of the setting at path, formatted as it would be written, in a form
// safe to print: a Secret shows as [redacted], a URL without password, path and query
// (see RedactURL).
func (c *Config) Get(path string) (string, bool) {
	s, ok := Lookup(path)
	if !ok {
		return "", false
	}
	v := reflect.ValueOf(c).Elem().FieldByIndex(s.index)
	if s.Secret {
		if v.Len() == 0 {
			return "", true
		}
		return redacted, true
	}
	switch {
	case v.Type() == urlType:
		return RedactURL(v.String()), true
	case v.Kind() == reflect.Map && v.Type().Elem() == urlType:
		redactedURLs := reflect.MakeMapWithSize(v.Type(), v.Len())
		for _, k := range v.MapKeys() {
			redactedURLs.SetMapIndex(k, reflect.ValueOf(URL(RedactURL(v.MapIndex(k).String()))))
		}
		v = redactedURLs
	}
	return format(v, s.Kind), true
}

// raw returns the setting's value unredacted, for comparing layers.
func (c *Config) raw(s Setting) string {
	return format(reflect.ValueOf(c).Elem().FieldByIndex(s.index), s.Kind)
}

// Set parses value for the setting at path (as from an environment variable or flag) and
// stores it. A list is comma-separated. Settings of the YAML file only cannot be Set.
func (c *Config) Set(path, value string) error {
	s, ok := Lookup(path)
	if !ok {
		return &outbox.ConfigError{Field: path, Reason: "unknown setting"}
	}
	return c.setField(s, value, "")
}

func (c *Config) setField(s Setting, value, from string) error {
	if s.YAMLOnly() {
		return &outbox.ConfigError{Field: s.Path, Reason: "can only be set in the YAML file" + from}
	}
	return setValue(reflect.ValueOf(c).Elem().FieldByIndex(s.index), s.Kind, s.Path, value, from)
}

// setValue parses value as a kind of setting into f. path and from (" (from X)") name the
// setting and the layer in errors.
func setValue(f reflect.Value, kind, path, value, from string) error {
	switch kind {
	case KindString:
		f.SetString(value)
	case KindInt:
		n, err := strconv.ParseInt(strings.TrimSpace(value), 10, strconv.IntSize)
		if err != nil {
			return &outbox.ConfigError{Field: path, Reason: fmt.Sprintf("%q is not an integer%s", value, from)}
		}
		f.SetInt(n)
	case KindBool:
		b, err := strconv.ParseBool(strings.TrimSpace(value))
		if err != nil {
			return &outbox.ConfigError{Field: path, Reason: fmt.Sprintf("%q is not a boolean (write true or false)%s", value, from)}
		}
		f.SetBool(b)
	case KindFloat:
		x, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return &outbox.ConfigError{Field: path, Reason: fmt.Sprintf("%q is not a number%s", value, from)}
		}
		f.SetFloat(x)
	case KindDuration:
		d, err := time.ParseDuration(strings.TrimSpace(value))
		if err != nil {
			return &outbox.ConfigError{Field: path,
				Reason: fmt.Sprintf("%q is not a duration (write e.g. 250ms, 5s, 1m30s)%s", value, from)}
		}
		f.SetInt(int64(d))
	case KindList:
		var items []string
		for item := range strings.SplitSeq(value, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		f.Set(makeList(f.Type(), items))
	default:
		return &outbox.ConfigError{Field: path, Reason: "can only be set in the YAML file" + from}
	}
	return nil
}

// makeList returns a slice of type t (of a string kind) holding items.
func makeList(t reflect.Type, items []string) reflect.Value {
	if items == nil {
		return reflect.Zero(t)
	}
	list := reflect.MakeSlice(t, len(items), len(items))
	for i, item := range items {
		list.Index(i).SetString(item)
	}
	return list
}

// ApplyEnv sets every setting whose OUTBOX_* variable getenv returns non-empty.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	for _, s := range settings() {
		if s.YAMLOnly() {
			continue
		}
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
	return c.applyMapping(reflect.ValueOf(c).Elem(), root, "")
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

// applyMapping sets the fields of the struct v from the mapping m; prefix is the YAML path
// of v with a trailing dot.
func (c *Config) applyMapping(v reflect.Value, m *yaml.Node, prefix string) error {
	t := v.Type()
	seen := make(map[string]bool, len(m.Content)/2)
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, err := plainKey(m.Content[i], prefix)
		if err != nil {
			return err
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
		if err := c.applyValue(v.Field(fi), val, path); err != nil {
			return err
		}
	}
	return nil
}

// plainKey resolves a mapping key, which must be a scalar.
func plainKey(n *yaml.Node, prefix string) (*yaml.Node, error) {
	k, err := resolve(n, prefix)
	if err != nil {
		return nil, err
	}
	if k.Kind != yaml.ScalarNode {
		return nil, &outbox.ConfigError{Field: cmpPath(strings.TrimSuffix(prefix, ".")),
			Reason: fmt.Sprintf("line %d: keys must be plain names", k.Line)}
	}
	return k, nil
}

// applyValue sets the field f, at path, from the non-null node val.
func (c *Config) applyValue(f reflect.Value, val *yaml.Node, path string) error {
	if f.Kind() == reflect.Struct && f.Type() != durationType {
		if val.Kind != yaml.MappingNode {
			return &outbox.ConfigError{Field: path, Reason: fmt.Sprintf("line %d: must be a mapping of settings", val.Line)}
		}
		return c.applyMapping(f, val, path+".")
	}
	kind := kindOf(f.Type())
	switch {
	case kind == KindSinks:
		return c.applySinks(f, val, path)
	case kind == KindRoutes:
		return c.applyRoutes(f, val, path)
	case kind == KindInboxes:
		return c.applyInboxes(f, val, path)
	case kind == KindMap:
		return applyMap(f, val, path)
	case kind == KindList && val.Kind == yaml.SequenceNode:
		items := make([]string, 0, len(val.Content))
		for _, item := range val.Content {
			item, err := resolve(item, path)
			if err != nil {
				return err
			}
			if item.Kind != yaml.ScalarNode || isNull(item) {
				return &outbox.ConfigError{Field: path, Reason: fmt.Sprintf("line %d: list items must be strings", item.Line)}
			}
			items = append(items, item.Value)
		}
		f.Set(reflect.MakeSlice(f.Type(), 0, 0)) // an empty YAML list sets an empty list
		if len(items) > 0 {
			f.Set(makeList(f.Type(), items))
		}
		return nil
	case val.Kind == yaml.ScalarNode:
		return setValue(f, kind, path, val.Value, fmt.Sprintf(" (line %d)", val.Line))
	default:
		want := "a single value"
		if kind == KindList {
			want = "a list of strings"
		}
		return &outbox.ConfigError{Field: path, Reason: fmt.Sprintf("line %d: must be %s", val.Line, want)}
	}
}

// applyMap sets a map of strings from a YAML mapping of plain values.
func applyMap(f reflect.Value, val *yaml.Node, path string) error {
	if val.Kind != yaml.MappingNode {
		return &outbox.ConfigError{Field: path, Reason: fmt.Sprintf("line %d: must be a mapping of names to strings", val.Line)}
	}
	m := reflect.MakeMapWithSize(f.Type(), len(val.Content)/2)
	for i := 0; i+1 < len(val.Content); i += 2 {
		k, err := plainKey(val.Content[i], path+".")
		if err != nil {
			return err
		}
		key := reflect.ValueOf(k.Value)
		if m.MapIndex(key).IsValid() {
			return &outbox.ConfigError{Field: path, Reason: fmt.Sprintf("duplicate key %q (line %d)", k.Value, k.Line)}
		}
		v, err := resolve(val.Content[i+1], path)
		if err != nil {
			return err
		}
		if v.Kind != yaml.ScalarNode || isNull(v) {
			return &outbox.ConfigError{Field: path, Reason: fmt.Sprintf("line %d: the value of %q must be a string", v.Line, k.Value)}
		}
		m.SetMapIndex(key, reflect.ValueOf(v.Value).Convert(f.Type().Elem()))
	}
	f.Set(m)
	return nil
}

// applySinks sets the named sinks: each starts from DefaultSink without a type.
func (c *Config) applySinks(f reflect.Value, val *yaml.Node, path string) error {
	if val.Kind != yaml.MappingNode {
		return &outbox.ConfigError{Field: path, Reason: fmt.Sprintf("line %d: must be a mapping of sink names to sink settings", val.Line)}
	}
	sinks := make(map[string]Sink, len(val.Content)/2)
	for i := 0; i+1 < len(val.Content); i += 2 {
		k, err := plainKey(val.Content[i], path+".")
		if err != nil {
			return err
		}
		name := k.Value
		field := path + "." + name
		if _, dup := sinks[name]; dup {
			return &outbox.ConfigError{Field: field, Reason: fmt.Sprintf("duplicate key (line %d)", k.Line)}
		}
		v, err := resolve(val.Content[i+1], field)
		if err != nil {
			return err
		}
		if v.Kind != yaml.MappingNode {
			return &outbox.ConfigError{Field: field, Reason: fmt.Sprintf("line %d: must be a mapping of sink settings (type, and the block of that type)", v.Line)}
		}
		s := DefaultSink()
		s.Type = ""
		if err := c.applyMapping(reflect.ValueOf(&s).Elem(), v, field+"."); err != nil {
			return err
		}
		sinks[name] = s
	}
	f.Set(reflect.ValueOf(sinks))
	return nil
}

// applyRoutes sets the routes from a YAML sequence of {topic, sink} mappings.
func (c *Config) applyRoutes(f reflect.Value, val *yaml.Node, path string) error {
	if val.Kind != yaml.SequenceNode {
		return &outbox.ConfigError{Field: path, Reason: fmt.Sprintf("line %d: must be a list of {topic: PATTERN, sink: NAME}", val.Line)}
	}
	routes := make([]Route, 0, len(val.Content))
	for i, item := range val.Content {
		field := fmt.Sprintf("%s[%d]", path, i)
		item, err := resolve(item, field)
		if err != nil {
			return err
		}
		if item.Kind != yaml.MappingNode {
			return &outbox.ConfigError{Field: field, Reason: fmt.Sprintf("line %d: must be a mapping {topic: PATTERN, sink: NAME}", item.Line)}
		}
		var r Route
		if err := c.applyMapping(reflect.ValueOf(&r).Elem(), item, field+"."); err != nil {
			return err
		}
		routes = append(routes, r)
	}
	f.Set(reflect.ValueOf(routes))
	return nil
}

// suggest proposes the known key that key probably meant (other case, dashes, a typo of
// one or two characters), else lists the known keys.
func suggest(t reflect.Type, key, prefix string) string {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "-", "_")) }
	var known []string
	best, bestDist := "", 3
	for j := range t.NumField() {
		name := t.Field(j).Tag.Get("yaml")
		if norm(name) == norm(key) {
			return fmt.Sprintf("; did you mean %s%s?", prefix, name)
		}
		if d := editDistance(norm(name), norm(key)); d < bestDist && d < len(name)/2 {
			best, bestDist = name, d
		}
		known = append(known, name)
	}
	if best != "" {
		return fmt.Sprintf("; did you mean %s%s?", prefix, best)
	}
	return "; known keys here: " + strings.Join(known, ", ")
}

// editDistance is the Levenshtein distance of a and b, in bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b))
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
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
	// Environ lists the environment as KEY=value pairs, to find OUTBOX_* variables that
	// name no setting (see AllowedEnv). Nil means os.Environ() when Getenv is nil too, and no
	// check otherwise.
	Environ []string
}

// MaxFileSize is the largest configuration file Load reads.
const MaxFileSize = 1 << 20

// AllowedEnv reports whether name, an OUTBOX_* variable that names no setting, is one the
// command or the project's tests document: OUTBOX_CONFIG, and the test harness's
// OUTBOX_TEST_* and OUTBOX_BENCH_SECONDS.
func AllowedEnv(name string) bool {
	return name == EnvConfigFile || name == "OUTBOX_BENCH_SECONDS" || strings.HasPrefix(name, "OUTBOX_TEST_")
}

// checkEnviron refuses non-empty OUTBOX_* variables that name no setting, as the YAML file
// refuses unknown keys: a misspelt variable would otherwise be ignored silently.
func checkEnviron(environ []string) error {
	known := map[string]bool{}
	for _, s := range settings() {
		known[envName(s.Path)] = true
	}
	var unknown []string
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		// Set to the empty string counts as unset, as for the settings' variables.
		if value != "" && strings.HasPrefix(name, EnvPrefix) && !known[name] && !AllowedEnv(name) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	name := unknown[0]
	best, bestDist := "", 4
	for env := range known {
		if d := editDistance(env, name); d < bestDist || d == bestDist && env < best {
			best, bestDist = env, d
		}
	}
	reason := "unknown environment variable: no setting has this name"
	if best != "" {
		reason += "; did you mean " + best + "?"
	} else {
		reason += " (see docs/configuration.md for the settings' variables)"
	}
	if len(unknown) > 1 {
		reason += fmt.Sprintf(" (also unknown: %s)", strings.Join(unknown[1:], ", "))
	}
	return &outbox.ConfigError{Field: name, Reason: reason}
}

// readFile reads the configuration file, at most MaxFileSize bytes of it: a larger file, a
// directory or a device is refused, a pipe (--config <(...)) read up to the limit.
func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	tooLarge := fmt.Errorf("%s: larger than %d bytes (1 MiB), the most a configuration file may hold", name, MaxFileSize)
	switch mode := fi.Mode(); {
	case mode.IsDir():
		return nil, fmt.Errorf("%s is a directory, not a YAML file", name)
	case mode.IsRegular():
		if fi.Size() > MaxFileSize {
			return nil, tooLarge
		}
	case mode&os.ModeNamedPipe != 0:
	case mode&os.ModeDevice != 0:
		return nil, fmt.Errorf("%s is a device, not a YAML file", name)
	default:
		return nil, fmt.Errorf("%s is not a regular file, not a YAML file", name)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, tooLarge
	}
	return data, nil
}

// Load builds the configuration from defaults, the YAML file, the environment and the flags,
// in increasing precedence, and validates it. A validation error says which layer set the
// bad value.
func Load(opts LoadOptions) (Config, error) {
	getenv, environ := opts.Getenv, opts.Environ
	if getenv == nil {
		getenv = os.Getenv
		if environ == nil {
			environ = os.Environ()
		}
	}
	if err := checkEnviron(environ); err != nil {
		return Default(), err
	}
	cfg := Default()
	origin := map[string]string{} // setting path → where its value came from
	file := opts.File
	if file == "" {
		file = getenv(EnvConfigFile)
	}
	if file != "" {
		data, err := readFile(file)
		if err != nil {
			return cfg, &outbox.ConfigError{Field: fileField, Reason: err.Error()}
		}
		if err := cfg.applyYAML(data, file); err != nil {
			return cfg, err
		}
		before := Default()
		for _, s := range settings() {
			if before.raw(s) != cfg.raw(s) {
				origin[s.Path] = file
			}
		}
	}
	for _, s := range settings() {
		if s.YAMLOnly() {
			// A variable named like one would be silently ignored: say so instead.
			if name := envName(s.Path); getenv(name) != "" {
				return cfg, &outbox.ConfigError{Field: s.Path, Reason: "can only be set in the YAML file, not with " + name}
			}
			continue
		}
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
			if s.YAMLOnly() {
				return cfg, &outbox.ConfigError{Field: s.Path, Reason: "can only be set in the YAML file"}
			}
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
		if errors.As(err, &ce) {
			if from := originOf(origin, ce.Field); from != "" {
				return cfg, &outbox.ConfigError{Field: ce.Field, Reason: ce.Reason + " (from " + from + ")"}
			}
		}
		return cfg, err
	}
	return cfg, nil
}

// originOf returns where the setting at field came from: its own entry, or that of the
// setting holding it (sinks for sinks.events.kafka.brokers, routes for routes[0].sink).
func originOf(origin map[string]string, field string) string {
	if from := origin[field]; from != "" {
		return from
	}
	for path, from := range origin {
		if strings.HasPrefix(field, path+".") || strings.HasPrefix(field, path+"[") {
			return from
		}
	}
	return ""
}
