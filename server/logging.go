package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"time"
)

// Cloud Logging severities (LogSeverity) as slog levels: slog's four, and DEFAULT (a line that says
// nothing of its severity) and CRITICAL below and above them.
const (
	sevDefault  = slog.LevelDebug - 4
	sevDebug    = slog.LevelDebug
	sevInfo     = slog.LevelInfo
	sevWarning  = slog.LevelWarn
	sevError    = slog.LevelError
	sevCritical = slog.LevelError + 4
)

// severityName is the name that Cloud Run's log collection reads from a line's "severity" field; a level
// between two of the six above takes the lower one's name.
func severityName(l slog.Level) string {
	switch {
	case l < sevDebug:
		return "DEFAULT"
	case l < sevInfo:
		return "DEBUG"
	case l < sevWarning:
		return "INFO"
	case l < sevError:
		return "WARNING"
	case l < sevCritical:
		return "ERROR"
	default:
		return "CRITICAL"
	}
}

// logger writes one JSON object per line in Cloud Logging's structured format, through slog's JSON
// handler. now is the clock for each entry's time and each request's latency, replaceable in tests.
type logger struct {
	handler slog.Handler
	redact  *redactor
	now     func() time.Time
}

func newLogger(w io.Writer, r *redactor) *logger {
	return &logger{
		handler: slog.NewJSONHandler(w, &slog.HandlerOptions{
			Level:       sevDefault,
			ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr { return cloudAttr(r, groups, a) },
		}),
		redact: r,
		now:    time.Now,
	}
}

// cloudAttr renames slog's built-in fields to Cloud Logging's (severity, message; time in UTC) and
// redacts every string on its way out, errors and Stringers included. Durations are written as Go
// writes them ("1.5s"), not in nanoseconds.
func cloudAttr(r *redactor, groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 {
		switch a.Key {
		case slog.LevelKey:
			level, _ := a.Value.Any().(slog.Level)
			return slog.String("severity", severityName(level))
		case slog.MessageKey:
			return slog.String("message", r.redact(a.Value.String()))
		case slog.TimeKey:
			return slog.String(slog.TimeKey, a.Value.Time().UTC().Format(time.RFC3339Nano))
		}
	}
	switch a.Value.Kind() {
	case slog.KindString:
		return slog.String(a.Key, r.redact(a.Value.String()))
	case slog.KindDuration:
		return slog.String(a.Key, a.Value.Duration().String())
	case slog.KindAny:
		switch v := a.Value.Any().(type) {
		case error:
			return slog.String(a.Key, r.redact(v.Error()))
		case fmt.Stringer:
			return slog.String(a.Key, r.redact(v.String()))
		}
	}
	return a
}

// log writes an entry with the given fields (key, value pairs) beside severity, message and time.
func (l *logger) log(level slog.Level, message string, kv ...any) {
	ctx := context.Background()
	if !l.handler.Enabled(ctx, level) {
		return
	}
	rec := slog.NewRecord(l.now(), level, message, 0)
	rec.Add(kv...)
	_ = l.handler.Handle(ctx, rec)
}

func (l *logger) info(message string, kv ...any)  { l.log(sevInfo, message, kv...) }
func (l *logger) warn(message string, kv ...any)  { l.log(sevWarning, message, kv...) }
func (l *logger) error(message string, kv ...any) { l.log(sevError, message, kv...) }

// stdLogger is the logger for net/http's ErrorLog, whose lines (a bad request, a broken connection, a
// proxy error) are warnings.
func (l *logger) stdLogger() *log.Logger { return slog.NewLogLogger(l.handler, sevWarning) }
