package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestPostgresConnString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
		isPostgres     bool
		host           string // as pgx parses it
		port           uint16
		db, user, pass string
	}{
		{
			name: "psycopg2 driver", in: "postgresql+psycopg2://mlflow:pw@10.0.0.5:5432/mlflow",
			want: "postgresql://mlflow:pw@10.0.0.5:5432/mlflow", isPostgres: true,
			host: "10.0.0.5", port: 5432, db: "mlflow", user: "mlflow", pass: "pw",
		},
		{
			name: "no driver", in: "postgresql://u:p@db.internal/tracking",
			want: "postgresql://u:p@db.internal/tracking", isPostgres: true,
			host: "db.internal", port: 5432, db: "tracking", user: "u", pass: "p",
		},
		{
			name: "postgres scheme and psycopg 3", in: "postgres+psycopg://u:p@h:6543/d",
			want: "postgresql://u:p@h:6543/d", isPostgres: true,
			host: "h", port: 6543, db: "d", user: "u", pass: "p",
		},
		{
			name: "upper-case scheme", in: "POSTGRESQL+PSYCOPG2://u:p@h/d",
			want: "postgresql://u:p@h/d", isPostgres: true,
			host: "h", port: 5432, db: "d", user: "u", pass: "p",
		},
		{
			name: "Cloud SQL unix socket", in: "postgresql+psycopg2://mlflow:pw@/mlflow?host=/cloudsql/proj:us-central1:inst",
			want: "postgresql://mlflow:pw@/mlflow?host=%2Fcloudsql%2Fproj%3Aus-central1%3Ainst", isPostgres: true,
			host: "/cloudsql/proj:us-central1:inst", port: 5432, db: "mlflow", user: "mlflow", pass: "pw",
		},
		{
			name: "percent-encoded password", in: "postgresql+psycopg2://u:p%40ss%2Fw0rd@h/d",
			want: "postgresql://u:p%40ss%2Fw0rd@h/d", isPostgres: true,
			host: "h", port: 5432, db: "d", user: "u", pass: "p@ss/w0rd",
		},
		{
			name: "libpq-only parameters dropped, others kept", in: "postgresql+psycopg2://u:p@h/d?sslmode=require&keepalives=1&keepalives_idle=30&application_name=mlflow",
			want: "postgresql://u:p@h/d?application_name=mlflow&sslmode=require", isPostgres: true,
			host: "h", port: 5432, db: "d", user: "u", pass: "p",
		},
		{
			name: "hostaddr becomes host", in: "postgresql://u:p@/d?hostaddr=10.1.2.3",
			want: "postgresql://u:p@/d?host=10.1.2.3", isPostgres: true,
			host: "10.1.2.3", port: 5432, db: "d", user: "u", pass: "p",
		},
		{name: "sqlite", in: "sqlite:///mlflow.db", isPostgres: false},
		{name: "mysql", in: "mysql+pymysql://u:p@h/d", isPostgres: false},
		{name: "plain path", in: "./mlruns", isPostgres: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, isPostgres, err := postgresConnString(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want || isPostgres != tt.isPostgres {
				t.Fatalf("postgresConnString(%q) = %q, %v; want %q, %v", tt.in, got, isPostgres, tt.want, tt.isPostgres)
			}
			if !isPostgres {
				return
			}
			cfg, err := pgx.ParseConfig(got)
			if err != nil {
				t.Fatalf("pgx does not accept %q: %v", got, err)
			}
			if cfg.Host != tt.host || cfg.Port != tt.port || cfg.Database != tt.db || cfg.User != tt.user || cfg.Password != tt.pass {
				t.Errorf("pgx reads host=%q port=%d db=%q user=%q password=%q; want %q %d %q %q %q",
					cfg.Host, cfg.Port, cfg.Database, cfg.User, cfg.Password, tt.host, tt.port, tt.db, tt.user, tt.pass)
			}
			if len(cfg.RuntimeParams) > 0 && cfg.RuntimeParams["keepalives"] != "" {
				t.Errorf("libpq-only parameter passed to the server: %v", cfg.RuntimeParams)
			}
		})
	}
}

func TestPostgresConnStringErrorHidesPassword(t *testing.T) {
	t.Parallel()
	_, _, err := postgresConnString("postgresql+psycopg2://u:bad%zzsecret@h/d")
	if err == nil {
		t.Fatal("no error for an invalid percent-encoding")
	}
	if strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "DEPLOY_MLFLOW_BACKEND_STORE_URI") {
		t.Errorf("error %q quotes the password or does not name the variable", err)
	}
}

func TestURLSecrets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []string
	}{
		{"postgresql+psycopg2://u:pw123456@h/d", []string{"pw123456"}},
		{"postgresql://u:p%40ss%2Fword@h/d", []string{"p%40ss%2Fword", "p@ss/word"}},
		{"postgresql://u:p@ss@h/d", []string{"p@ss"}},
		{"postgresql://u:pw@/d?host=/cloudsql/p:r:i", []string{"pw"}},
		{"postgresql://u@h/d?password=qp%2Bx", []string{"qp+x", "qp%2Bx"}},
		{"sqlite:///mlflow.db", nil},
		{"postgresql://u@h/d", nil},
	}
	for _, tt := range tests {
		if got := urlSecrets(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("urlSecrets(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
