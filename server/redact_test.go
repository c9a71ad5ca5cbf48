package main

import "testing"

func TestRedact(t *testing.T) {
	t.Parallel()
	r := newRedactor("hunter2secret", "p@ss/word", "", "abc")
	tests := []struct{ name, in, want string }{
		{"nothing to hide", "GET /api/2.0/mlflow/runs/get 200", "GET /api/2.0/mlflow/runs/get 200"},
		{"known secret anywhere", "auth failed with hunter2secret!", "auth failed with REDACTED!"},
		{"decoded password", "pw is p@ss/word here", "pw is REDACTED here"},
		{"short secrets are left to the patterns", "abc def", "abc def"},
		{"URL userinfo", "connect postgresql+psycopg2://mlflow:other-pass@10.0.0.5/db failed", "connect postgresql+psycopg2://mlflow:REDACTED@10.0.0.5/db failed"},
		{"URL with @ in password", "url=postgresql://u:a@b@h/d", "url=postgresql://u:REDACTED@h/d"},
		{"socket form", "postgresql://u:xyz@/mlflow?host=/cloudsql/p:r:i", "postgresql://u:REDACTED@/mlflow?host=/cloudsql/p:r:i"},
		{"user without password kept", "postgresql://u@h/d", "postgresql://u@h/d"},
		{"http URL without userinfo kept", "see https://mlflow.org/docs:80", "see https://mlflow.org/docs:80"},
		{"libpq DSN", "host=h user=u password=xyz dbname=d", "host=h user=u password=REDACTED dbname=d"},
		{"query parameter", "postgresql://h/d?user=u&password=xyz&sslmode=require", "postgresql://h/d?user=u&password=REDACTED&sslmode=require"},
		{"two URLs", "a://u:x@h b://v:y@k", "a://u:REDACTED@h b://v:REDACTED@k"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.redact(tt.in); got != tt.want {
				t.Errorf("redact(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
