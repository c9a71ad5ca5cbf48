package main

import (
	"bufio"
	"io"
	"log/slog"
	"strings"
)

// relay copies a child's output to the log, one structured entry per line, redacted (MLflow or its
// libraries may print the database URL). Lines longer than maxLine are split, so that a runaway line
// cannot make the server buffer without bound.
func (l *logger) relay(r io.Reader, source, stream string) {
	const maxLine = 64 << 10
	br := bufio.NewReaderSize(r, maxLine)
	var prev slog.Leveler // none before the first line
	for {
		line, _, err := br.ReadLine()
		if len(line) > 0 {
			text := string(line)
			sev := childSeverity(text, stream, prev)
			prev = sev
			l.log(sev, text, "source", source, "stream", stream)
		}
		if err != nil {
			return
		}
	}
}

// childSeverity guesses the severity of a line of MLflow's output from the level that Python's logging,
// uvicorn and click print near the start of a line ("2026/01/02 10:00:00 INFO mlflow...", "INFO:     ...",
// "[MLflow] WARNING: ..."). Indented lines and traceback lines continue the entry before them, so a
// traceback after an ERROR stays ERROR (prev is the line before's, nil for the first line). Anything else is INFO on stdout and DEFAULT on stderr, where
// Python writes all of its logging, so stderr alone says nothing.
func childSeverity(line, stream string, prev slog.Leveler) slog.Level {
	if strings.HasPrefix(line, "Traceback (most recent call last)") {
		return sevError
	}
	if prev != nil && (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) {
		return prev.Level()
	}
	fields := strings.Fields(line)
	if len(fields) > 5 {
		fields = fields[:5]
	}
	for _, f := range fields {
		switch strings.ToUpper(strings.Trim(f, "[]:-")) {
		case "CRITICAL", "FATAL":
			return sevCritical
		case "ERROR":
			return sevError
		case "WARNING", "WARN":
			return sevWarning
		case "INFO":
			return sevInfo
		case "DEBUG", "TRACE":
			return sevDebug
		}
	}
	if strings.Contains(line, "Error:") || strings.Contains(line, "Exception:") {
		return sevError
	}
	if stream == "stdout" {
		return sevInfo
	}
	return sevDefault
}
