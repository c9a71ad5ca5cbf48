package config

import "testing"

func TestMountDir(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ file, dir string }{ // dir "" means refused
		{"/secrets/creds.json", "/secrets"},
		{"/a/b/c", "/a/b"},
		{"", ""},
		{"/creds", ""},
		{"/s//a", ""},
		{"/s/../a", ""},
		{"/s/./a", ""},
		{"/s/a/..", ""},
		{"/cloudsql/key", ""},
		{"/cloudsql/x/key", ""},
		{"/cloudsqlx/key", "/cloudsqlx"},
	} {
		dir, err := mountDir(tc.file)
		if dir != tc.dir || (err == nil) != (tc.dir != "") {
			t.Errorf("mountDir(%q) = %q, %v; want %q", tc.file, dir, err, tc.dir)
		}
	}
}

// TestParseSecretAtRoot is a case that once panicked: "/" trimmed to an empty path.
func TestParseSecretAtRoot(t *testing.T) {
	t.Parallel()
	env := validEnv()
	env["INPUT_SECRETS"] = "/=key"
	_, err := parse(env)
	if inputError(err, "secrets") == nil {
		t.Errorf("want an error naming secrets, got %v", err)
	}
}
