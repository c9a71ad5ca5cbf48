package main

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzPostgresConnString checks the database URL handling on any input: an error never quotes the URL's
// password; the redactor removes every password urlSecrets finds from the URL; a converted URL keeps the
// user and password and drops every libpq-only parameter.
func FuzzPostgresConnString(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		conn, isPostgres, err := postgresConnString(raw)
		secrets := urlSecrets(raw)
		if err != nil {
			if !isPostgres {
				t.Fatalf("error for a URL that is not PostgreSQL's: %v", err)
			}
			if u, _, ok := strings.Cut(raw, "://"); ok && strings.Contains(err.Error(), raw) && u != "" {
				t.Fatalf("the error quotes the URL: %v", err)
			}
			for _, s := range secrets {
				if len(s) >= minLiteralSecret && strings.Contains(err.Error(), s) {
					t.Fatalf("the error for %q holds its password %q: %v", raw, s, err)
				}
			}
		}
		if redacted := newRedactor(secrets...).redact(raw); len(secrets) > 0 {
			for _, s := range secrets {
				if len(s) >= minLiteralSecret && strings.Contains(redacted, s) {
					t.Fatalf("redacting %q left its password %q: %q", raw, s, redacted)
				}
			}
		}
		if err != nil || !isPostgres {
			return
		}
		out, perr := url.Parse(conn)
		if perr != nil {
			t.Fatalf("converted %q to %q, which does not parse: %v", raw, conn, perr)
		}
		_, rest, _ := strings.Cut(raw, "://")
		in, _ := url.Parse("postgresql://" + rest)
		if out.Scheme != "postgresql" || out.User.String() != in.User.String() || out.Host != in.Host || out.Path != in.Path {
			t.Fatalf("converted %q to %q: scheme, user, password, host or database changed", raw, conn)
		}
		q := out.Query()
		for _, p := range libpqOnlyParams {
			if q.Has(p) {
				t.Fatalf("converted %q to %q, which keeps the libpq-only %s", raw, conn, p)
			}
		}
	})
}
