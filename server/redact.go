package main

import (
	"regexp"
	"sort"
	"strings"
)

// redactor removes credentials from text before it is logged: the known secrets wherever they appear, and
// anything that looks like a password in a URL or a libpq connection string, since MLflow and its
// libraries may print URLs that the server did not hand them in the form it knows.
type redactor struct {
	secrets *strings.Replacer
}

const redacted = "REDACTED"

// minLiteralSecret is the shortest secret replaced wherever it appears. A shorter one would turn up inside
// ordinary words and make every line unreadable; where such a password can appear (in URLs and
// connection strings) the patterns below remove it regardless of length.
const minLiteralSecret = 6

var (
	// scheme://user:PASSWORD@ ; the password may hold an unencoded @, so take the last one before a
	// space or slash, as URL parsers take the last before the path. Group 1 is what comes before the
	// password, group 2 the password; urlSecrets reads the database URL's with it too.
	urlPassword = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)([^\s/]*)@`)
	// password=... in a query string or a libpq DSN.
	paramPassword = regexp.MustCompile(`(?i)(\bpassword=)[^\s&]*`)
)

func newRedactor(secrets ...string) *redactor {
	var uniq []string
	seen := map[string]bool{}
	for _, s := range secrets {
		if len(s) >= minLiteralSecret && !seen[s] {
			seen[s] = true
			uniq = append(uniq, s)
		}
	}
	// Longest first, so that a secret that contains another is replaced whole.
	sort.Slice(uniq, func(i, j int) bool { return len(uniq[i]) > len(uniq[j]) })
	r := &redactor{}
	if len(uniq) > 0 {
		pairs := make([]string, 0, 2*len(uniq))
		for _, s := range uniq {
			pairs = append(pairs, s, redacted)
		}
		r.secrets = strings.NewReplacer(pairs...)
	}
	return r
}

func (r *redactor) redact(s string) string {
	if r.secrets != nil {
		s = r.secrets.Replace(s)
	}
	if strings.Contains(s, "://") {
		s = urlPassword.ReplaceAllString(s, "${1}"+redacted+"@")
	}
	if strings.Contains(strings.ToLower(s), "password=") {
		s = paramPassword.ReplaceAllString(s, "${1}"+redacted)
	}
	return s
}
