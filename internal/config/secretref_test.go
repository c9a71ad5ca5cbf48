package config

import (
	"errors"
	"testing"
)

func TestParseSecretRef(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want string // the version's resource name, or "" when refused
	}{
		{"DB_url", "projects/my-project/secrets/DB_url/versions/latest"},
		{"DB_url:3", "projects/my-project/secrets/DB_url/versions/3"},
		{"DB_url:latest", "projects/my-project/secrets/DB_url/versions/latest"},
		{"projects/shared-proj/secrets/key", "projects/shared-proj/secrets/key/versions/latest"},
		{"projects/123456/secrets/key/versions/2", "projects/123456/secrets/key/versions/2"},
		{"DB_url:v2", ""},
		{"DB_url:0", ""},
		{"db url", ""},
		{"", ""},
		{"projects/p/DB_url", ""},
		{"projects/Bad_Project/secrets/key", ""},
		{"projects/shared-proj/secrets/key/versions", ""},
	} {
		ref, err := ParseSecretRef(tc.in, "my-project")
		switch {
		case tc.want == "" && !errors.Is(err, errSecretRef):
			t.Errorf("ParseSecretRef(%q) = %v, %v; want it refused", tc.in, ref, err)
		case tc.want != "" && (err != nil || ref.Name() != tc.want):
			t.Errorf("ParseSecretRef(%q) = %q, %v; want %q", tc.in, ref.Name(), err, tc.want)
		}
	}
}

func TestShown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"DB_url:3", "DB_url:3"},
		{"projects/p/secrets/s/versions/1", "projects/p/secrets/s/versions/1"},
		{"postgresql://u:pw@/db?host=/cloudsql/x", notShown},
		{"hunter2 !", notShown},
	} {
		if got := shown(tc.in); got != tc.want {
			t.Errorf("shown(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
