package secrets

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
	"github.com/deploy-mlflow/deploy-mlflow/internal/gcptest"
)

func TestResolve(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tokens := gcptest.StartTokenServer(t)
	sm := gcptest.StartSecretManager(t, tokens, gcptest.WithProject(project, gcptest.DefaultProjectNumber), gcptest.WithProject("other-project", "777777777777"))
	for _, v := range []string{"one", "two", "three"} {
		sm.AddSecret(project, "DB_url", []byte(v))
	}
	sm.AddSecret(project, "mlflow_id", []byte("admin"))
	sm.AddSecret(project, "mlflow_id", []byte("root"))
	sm.AddSecret("other-project", "vault_pass", []byte("pw"))
	c := client(t, tokens, sm.Addr())
	refs := []config.SecretRef{
		ref(t, "backend_store_secret", "DB_url"),
		ref(t, "username_secret", "mlflow_id:1"),
		ref(t, "password_secret", "projects/other-project/secrets/vault_pass/versions/latest"),
		ref(t, "secrets", "DB_url:latest"), // the same reference from another input: looked up once
	}

	cases := []struct {
		name     string
		pin      bool
		versions []string // Ref.Version of each distinct reference
		lines    []string
	}{
		{"pinned", true, []string{"3", "1", "1"}, []string{
			"DB_url → version 3 (was latest)",
			"mlflow_id → version 1 (as given)",
			"projects/other-project/secrets/vault_pass → version 1 (was latest)",
		}},
		{"latest", false, []string{"latest", "1", "latest"}, []string{
			"DB_url → latest (version 3 now; each instance reads the newest version when it starts)",
			"mlflow_id → version 1 (as given)",
			"projects/other-project/secrets/vault_pass → latest (version 1 now; each instance reads the newest version when it starts)",
		}},
	}
	for _, tc := range cases {
		before := sm.Calls("GetSecretVersion")
		res, err := Resolve(ctx, c, refs, tc.pin)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got []string
		for _, r := range res.Refs {
			got = append(got, r.Ref.Version)
		}
		if diff := cmp.Diff(tc.versions, got); diff != "" {
			t.Errorf("%s: versions (-want +got):\n%s", tc.name, diff)
		}
		if diff := cmp.Diff(tc.lines, res.Lines(project)); diff != "" {
			t.Errorf("%s: lines (-want +got):\n%s", tc.name, diff)
		}
		want := map[string]string{project: gcptest.DefaultProjectNumber, "other-project": "777777777777"}
		if diff := cmp.Diff(want, res.ProjectNumbers); diff != "" {
			t.Errorf("%s: project numbers (-want +got):\n%s", tc.name, diff)
		}
		if n := sm.Calls("GetSecretVersion") - before; n != 3 {
			t.Errorf("%s: %d version lookups for 3 distinct references", tc.name, n)
		}
	}
	if sm.Calls("AccessSecretVersion") != 0 {
		t.Error("Resolve read a secret's value; it must read only metadata")
	}

	// A rotation moves the pin; a reference with a number stays as given.
	sm.AddSecret(project, "DB_url", []byte("four"))
	sm.AddSecret(project, "mlflow_id", []byte("admin2"))
	res, err := Resolve(ctx, c, refs, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Pin(refs[0]).Version; got != "4" {
		t.Errorf("after a rotation DB_url is pinned to %q, want 4", got)
	}
	if got := res.Pin(refs[1]).Version; got != "1" {
		t.Errorf("mlflow_id:1 became version %q", got)
	}
}

// Every unusable reference is reported at once, with its input and the fix, also when pinning.
func TestResolveReportsEveryProblem(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tokens := gcptest.StartTokenServer(t)
	sm := gcptest.StartSecretManager(t, tokens)
	sm.AddSecret(project, "DB_url", []byte("one"))
	c := client(t, tokens, sm.Addr())
	res, err := Resolve(ctx, c, []config.SecretRef{ref(t, "backend_store_secret", "DB_url"), ref(t, "username_secret", "nope1"), ref(t, "password_secret", "nope2:3")}, true)
	for _, s := range []string{"nope1", "username_secret", "gcloud secrets create nope1", "nope2", "password_secret"} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("error %v does not say %q", err, s)
		}
	}
	if len(res.Refs) != 1 || res.Refs[0].Ref.Version != "1" {
		t.Errorf("what was learned despite the errors: %+v", res.Refs)
	}
}

func TestVersionName(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, project, number string
		ok                    bool
	}{
		{"projects/123/secrets/DB_url/versions/7", "123", "7", true},
		{"projects/my-project/secrets/DB_url/versions/12", "my-project", "12", true},
		// Pinning latest to latest would pin nothing.
		{"projects/123/secrets/DB_url/versions/latest", "", "", false},
		{"projects/123/secrets/DB_url/versions/prod", "", "", false},
		{"projects/123/secrets/DB_url/versions/0", "", "", false},
		{"projects/123/locations/us/secrets/DB_url/versions/1", "", "", false},
		{"", "", "", false},
	}
	for _, tc := range cases {
		p, n, err := versionName(tc.name)
		if (err == nil) != tc.ok || p != tc.project || n != tc.number {
			t.Errorf("versionName(%q) = %q, %q, %v", tc.name, p, n, err)
		}
		if err != nil && !strings.Contains(err.Error(), "secret_versions: latest") {
			t.Errorf("versionName(%q): error %q does not say what to do", tc.name, err)
		}
	}
}

func TestApply(t *testing.T) {
	t.Parallel()
	db := config.SecretRef{Project: project, Secret: "DB_url", Version: "latest", Input: "backend_store_secret"}
	dbMount := db
	dbMount.Input = "secrets"
	user := config.SecretRef{Project: project, Secret: "mlflow_id", Version: "2", Input: "username_secret"}
	other := config.SecretRef{Project: project, Secret: "tls", Version: "latest", Input: "secrets"}
	res := &Resolution{Refs: []Resolved{
		{Given: db, Ref: with(db, "5"), Current: "5"},
		{Given: user, Ref: user, Current: "2"},
		{Given: other, Ref: other, Current: "9"}, // not pinned (secret_versions: latest)
	}}
	c := &config.Config{
		BackendStore: db, Username: &user, Password: nil,
		Secrets: []config.SecretMount{{Env: "DB_AGAIN", Ref: dbMount}, {Path: "/secrets/tls/cert", Ref: other}},
	}
	orig := *c
	origMounts := append([]config.SecretMount(nil), c.Secrets...)

	got := res.Apply(c)
	want := &config.Config{
		BackendStore: with(db, "5"), Username: &user,
		Secrets: []config.SecretMount{{Env: "DB_AGAIN", Ref: with(dbMount, "5")}, {Path: "/secrets/tls/cert", Ref: other}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Apply (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(orig, *c); diff != "" {
		t.Errorf("Apply changed its input (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(origMounts, c.Secrets); diff != "" {
		t.Errorf("Apply changed the input's mounts (-before +after):\n%s", diff)
	}
}

func with(r config.SecretRef, version string) config.SecretRef {
	r.Version = version
	return r
}
