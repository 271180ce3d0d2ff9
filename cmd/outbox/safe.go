package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/cmd/outbox/internal/config"
)

// escapeText makes s, row data or an error message, safe to print on a terminal: control
// characters (ESC, BEL, CR, newlines, C1 controls, DEL), invalid UTF-8 and the Unicode
// format characters that reorder or hide text (bidi overrides, zero-width marks) become Go
// escapes (\x1b, \n, \u202e). Everything the command prints that comes from the table, the
// database or a broker goes through it; encoding/json escapes its strings already.
func escapeText(s string) string {
	i := strings.IndexFunc(s, unsafeRune)
	if i < 0 && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80 && unsafeRune(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[:size])
		}
		s = s[size:]
	}
	return b.String()
}

// unsafeRune reports whether r must not reach a terminal as it is: control characters and
// format characters (Cf: bidi overrides and isolates, zero-width spaces and joiners).
func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
}

// safeText is what the command prints of s, which may hold secrets and terminal escapes:
// redacted (config.Redact), then escaped (escapeText).
func safeText(s string) string { return escapeText(config.Redact(s)) }

// maxLogAttr is the most bytes of a string attribute (a topic, a key, an error) the command's
// log lines show; longer values are cut and say how long they were.
const maxLogAttr = 512

// newLogger is the command's logger, writing text or JSON lines to w. Its handler redacts
// secrets from every string and error attribute (config.Redact), shows attributes whose key
// names a secret (password, token, ...) as [redacted], and cuts string attributes longer than
// maxLogAttr bytes. Both handlers escape control characters.
func newLogger(cfg config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: safeAttr}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// safeAttr is the log handlers' ReplaceAttr: see newLogger.
func safeAttr(_ []string, a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	var s string
	switch v.Kind() {
	case slog.KindString:
		s = v.String()
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			s = x.Error()
		case fmt.Stringer:
			s = x.String()
		default:
			return a
		}
	default:
		return a
	}
	if a.Key == slog.MessageKey {
		return slog.String(a.Key, config.Redact(s))
	}
	if s != "" && config.SecretName(a.Key) {
		return slog.String(a.Key, "[redacted]")
	}
	return slog.String(a.Key, cutText(config.Redact(s), maxLogAttr))
}

// cutText cuts s to at most limit bytes (on a rune boundary), saying how long it was.
func cutText(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	return fmt.Sprintf("%s(%d bytes)", outbox.CutText(s, limit), len(s))
}

// redisLogger sends go-redis's own log lines (pool and reconnect trouble) to the command's
// logger instead of the standard log package's stderr; go-redis's logger is process-wide,
// so only the command sets it (redis.SetLogger).
type redisLogger struct{ logger *slog.Logger }

// Printf implements go-redis's internal.Logging.
func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.logger.WarnContext(ctx, "redis client", slog.String("detail", fmt.Sprintf(format, v...)))
}
