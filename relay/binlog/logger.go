package binlog

import (
	"context"
	"log/slog"
)

// quietHandler passes go-mysql's logs on lower: its errors and warnings are info (the source
// reports, at its own level, the failures it handles), its info is debug.
type quietHandler struct{ h slog.Handler }

func (q *quietHandler) lower(l slog.Level) slog.Level {
	if l >= slog.LevelWarn {
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

func (q *quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return q.h.Enabled(ctx, q.lower(l))
}

func (q *quietHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Level = q.lower(r.Level)
	return q.h.Handle(ctx, r)
}

func (q *quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &quietHandler{h: q.h.WithAttrs(as)}
}

func (q *quietHandler) WithGroup(n string) slog.Handler { return &quietHandler{h: q.h.WithGroup(n)} }
