package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// InputError is a bad action input: which one, what it was, and what would be valid.
type InputError struct {
	Input string
	Value string
	Want  string
}

func (e *InputError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("input %s: %s", e.Input, e.Want)
	}
	return fmt.Sprintf("input %s: %q is not valid: %s", e.Input, e.Value, e.Want)
}

// input is the named input, trimmed. GetInput reads INPUT_<NAME> upper-cased (spaces become underscores,
// hyphens stay), which is why every input name here is snake_case.
func (p *parser) input(name string) string { return p.gh.GetInput(name) }

func (p *parser) inputOr(name, def string) string {
	if v := p.input(name); v != "" {
		return v
	}
	return def
}

// fail records a problem and lets parsing go on, so that every problem is reported at once.
func (p *parser) fail(input, value, want string) {
	p.errs = append(p.errs, &InputError{Input: input, Value: value, Want: want})
}

func (p *parser) boolean(input, v string) bool {
	switch strings.ToLower(v) {
	case "true":
		return true
	case "false":
		return false
	}
	p.fail(input, v, "use true or false")
	return false
}

// integer is a whole-number input from lo to hi, or def when the input is empty or refused.
func (p *parser) integer(input string, def, lo, hi int32) int32 {
	v := p.input(input)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < int(lo) || n > int(hi) {
		p.fail(input, v, fmt.Sprintf("use a whole number from %d to %d", lo, hi))
		return def
	}
	return int32(n)
}

// duration is a Go duration ("15m") or a number of seconds ("600") from lo to hi, in whole seconds
// because Cloud Run counts timeouts in seconds; def when the input is empty or refused.
func (p *parser) duration(input string, def, lo, hi time.Duration) time.Duration {
	v := p.input(input)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		// Bounded before multiplying: a huge count of seconds would overflow into the valid range.
		if n, nerr := strconv.ParseInt(v, 10, 64); nerr == nil && n >= 0 && n <= int64(hi/time.Second) {
			d, err = time.Duration(n)*time.Second, nil
		}
	}
	if err != nil || d < lo || d > hi || d%time.Second != 0 {
		p.fail(input, v, fmt.Sprintf("use whole seconds from %s to %s, such as %s", lo, hi, def))
		return def
	}
	return d
}

// splitList splits a list input: by lines when it has several lines (so values may hold commas),
// else by commas. Blank items are dropped.
func splitList(v string) []string {
	sep := ","
	if strings.Contains(v, "\n") {
		sep = "\n"
	}
	var out []string
	for _, item := range strings.Split(v, sep) {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
