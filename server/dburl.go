package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// libpqOnlyParams are connection parameters that libpq (under psycopg2) understands and pgx does not; pgx
// would send them to the server as run-time settings, which PostgreSQL refuses.
var libpqOnlyParams = []string{
	"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout",
	"gssencmode", "gsslib", "channel_binding", "requirepeer", "sslcompression", "sslcrl", "sslcrldir",
	"ssl_min_protocol_version", "ssl_max_protocol_version", "load_balance_hosts", "hostaddr",
}

// postgresConnString turns MLflow's backend store URL, which is in SQLAlchemy's form
// (postgresql+psycopg2://USER:PASSWORD@HOST/DB, or with ?host=/cloudsql/... for a unix socket), into a
// connection string pgx accepts, by dropping the +driver part and libpq-only parameters. isPostgres is
// false for other backends (sqlite, mysql, ...), which need no conversion. Errors never quote the URL: it
// holds a password.
func postgresConnString(raw string) (conn string, isPostgres bool, err error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return "", false, nil
	}
	dialect, _, _ := strings.Cut(strings.ToLower(scheme), "+")
	if dialect != "postgresql" && dialect != "postgres" {
		return "", false, nil
	}
	u, err := url.Parse("postgresql://" + rest)
	if err != nil {
		// url.Error quotes the URL; keep only what went wrong.
		reason := "it is not a valid URL"
		if ue, ok := err.(*url.Error); ok {
			reason = ue.Err.Error()
		}
		return "", true, fmt.Errorf("%s is not a valid PostgreSQL URL (%s): percent-encode special characters in the user name and password", serverenv.BackendStoreURI, reason)
	}
	q := u.Query()
	// libpq's hostaddr names the server by IP; pgx knows only host.
	if u.Host == "" && q.Get("host") == "" && q.Get("hostaddr") != "" {
		q.Set("host", q.Get("hostaddr"))
	}
	for _, p := range libpqOnlyParams {
		q.Del(p)
	}
	u.RawQuery = q.Encode()
	return u.String(), true, nil
}

// urlSecrets returns the password in a database URL as written (percent-encoded) and decoded, and any
// password query parameter, for redaction.
func urlSecrets(raw string) []string {
	var out []string
	if m := urlPassword.FindStringSubmatch(raw); m != nil && m[2] != "" {
		out = append(out, m[2])
		if dec, err := url.PathUnescape(m[2]); err == nil && dec != m[2] {
			out = append(out, dec)
		}
	}
	if _, query, ok := strings.Cut(raw, "?"); ok {
		if q, err := url.ParseQuery(query); err == nil {
			for _, v := range q["password"] {
				out = append(out, v, url.QueryEscape(v))
			}
		}
	}
	return out
}
