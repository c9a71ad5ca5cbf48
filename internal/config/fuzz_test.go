package config

import (
	"errors"
	"math/big"
	"path"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/go-containerregistry/pkg/name"
)

// The fuzz targets check properties of each input parser, not just that it does not panic: every
// refusal is an *InputError naming the input that was changed, and every accepted value satisfies
// Google's documented rule, checked here independently of the parser's own regular expressions.
// Their seed corpora are in testdata/fuzz/<target>/.

// fuzzParse parses the README's valid workflow with change applied, and fails unless every error is
// an *InputError naming one of inputs.
func fuzzParse(t *testing.T, change map[string]string, inputs ...string) (*Config, []*InputError) {
	t.Helper()
	env := validEnv()
	for k, v := range change {
		env[k] = v
	}
	c, err := parse(env)
	if err == nil {
		return c, nil
	}
	var ies []*InputError
	for _, e := range unjoin(err) {
		var ie *InputError
		if !errors.As(e, &ie) {
			t.Fatalf("error is not an *InputError: %v", e)
		}
		ok := false
		for _, in := range inputs {
			ok = ok || ie.Input == in
		}
		if !ok {
			t.Fatalf("error names input %s, want one of %v: %v", ie.Input, inputs, ie)
		}
		if ie.Want == "" {
			t.Fatalf("error says nothing of what to do: %v", ie)
		}
		ies = append(ies, ie)
	}
	return nil, ies
}

// validSecretID is Secret Manager's rule: at most 255 letters, digits, hyphens and underscores.
func validSecretID(s string) bool {
	if len(s) < 1 || len(s) > 255 {
		return false
	}
	for _, r := range s {
		if !(r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)) || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func FuzzSecretRef(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := ParseSecretRef(s, "my-project")
		if err != nil {
			if !errors.Is(err, errSecretRef) {
				t.Fatalf("ParseSecretRef(%q): unexpected error %v", s, err)
			}
		} else {
			if !validSecretID(ref.Secret) {
				t.Fatalf("ParseSecretRef(%q) took secret ID %q", s, ref.Secret)
			}
			// A version is latest or a positive number, written without leading zeros (no bound is documented).
			if n, ok := new(big.Int).SetString(ref.Version, 10); ref.Version != "latest" && (!ok || n.Sign() < 1 || n.String() != ref.Version) {
				t.Fatalf("ParseSecretRef(%q) took version %q", s, ref.Version)
			}
			back, err := ParseSecretRef(ref.Name(), "other-project")
			if err != nil || back != ref {
				t.Fatalf("%q does not round-trip through Name() %q: %+v, %v", s, ref.Name(), back, err)
			}
		}
		// Through Parse, a refused reference is not echoed unless it could be a name.
		_, ies := fuzzParse(t, map[string]string{"INPUT_BACKEND_STORE_SECRET": s}, "backend_store_secret")
		for _, ie := range ies {
			if ie.Value != "" && ie.Value != notShown && ie.Value != strings.TrimSpace(s) {
				t.Fatalf("error shows %q for input %q", ie.Value, s)
			}
			if ie.Value != "" && ie.Value != notShown && !plausibleRefRE.MatchString(ie.Value) {
				t.Fatalf("error echoes a value that may be secret: %v", ie)
			}
		}
	})
}

// imageNeeds are the directories the deployed image needs, written out here rather than taken from
// the code under test.
var imageNeeds = []string{"/usr/local/bin", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/tmp", "/dev", "/proc", "/sys", "/var/run", "/cloudsql"}

func nested(a, b string) bool {
	return a == b || strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/")
}

func FuzzSecretMounts(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		c, _ := fuzzParse(t, map[string]string{"INPUT_SECRETS": s}, "secrets")
		if c == nil {
			return
		}
		dirs := map[string]string{}
		for _, m := range c.Secrets {
			if m.Env != "" {
				checkEnvName(t, m.Env)
				continue
			}
			p := m.Path
			dir := path.Dir(p)
			if !path.IsAbs(p) || path.Clean(p) != p || strings.Contains(p, ":") || dir == "/" {
				t.Fatalf("accepted mount path %q (from %q)", p, s)
			}
			for _, r := range imageNeeds {
				if nested(dir, r) {
					t.Fatalf("accepted mount path %q, whose directory meets %s", p, r)
				}
			}
			for d := range dirs {
				if d != dir && nested(d, dir) {
					t.Fatalf("accepted nested secret directories %s and %s", d, dir)
				}
			}
			if prev, ok := dirs[dir]; ok && prev != m.Ref.Project+"/"+m.Ref.Secret {
				t.Fatalf("accepted two secrets in %s", dir)
			}
			dirs[dir] = m.Ref.Project + "/" + m.Ref.Secret
		}
	})
}

// checkEnvName fails unless name is one Cloud Run takes and the container may set.
func checkEnvName(t *testing.T, name string) {
	t.Helper()
	ok := name != "" && len(name) <= 32768 && !(name[0] >= '0' && name[0] <= '9')
	for _, r := range name {
		ok = ok && (r == '_' || r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)))
	}
	switch {
	case !ok:
		t.Fatalf("accepted env name %q", name)
	case name == "PORT" || name == "K_SERVICE" || name == "K_REVISION" || name == "K_CONFIGURATION":
		t.Fatalf("accepted Cloud Run's own variable %s", name)
	case strings.HasPrefix(name, "DEPLOY_MLFLOW_") || strings.HasPrefix(name, "X_GOOGLE_"):
		t.Fatalf("accepted reserved variable %s", name)
	case name == "MLFLOW_WORKERS" || name == "MLFLOW_FLASK_SERVER_SECRET_KEY" || name == "MLFLOW_CRYPTO_KEK_PASSPHRASE":
		t.Fatalf("accepted %s, which an input of the action sets", name)
	}
}

func FuzzEnvVars(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		c, ies := fuzzParse(t, map[string]string{"INPUT_ENV_VARS": s}, "env_vars")
		// A value marked with '#' (no message has one) must never be shown; checked on short lists
		// only, since errors times items grows quadratically.
		items := splitList(strings.TrimSpace(s))
		for _, ie := range ies[:min(len(ies), 50)] {
			for _, item := range items[:min(len(items), 50)] {
				if _, v, ok := strings.Cut(item, "="); ok && strings.Contains(v, "#") && strings.Contains(ie.Error(), v) {
					t.Fatalf("error shows the value %q: %v", v, ie)
				}
			}
		}
		if c == nil {
			return
		}
		seen := map[string]bool{}
		for _, e := range c.EnvVars {
			checkEnvName(t, e.Name)
			if seen[e.Name] || len(e.Value) > 32768 {
				t.Fatalf("accepted %s twice or too long", e.Name)
			}
			seen[e.Name] = true
		}
	})
}

// checkLabel is Google's label rule, rune by rune.
func checkLabel(t *testing.T, k, v string) {
	t.Helper()
	part := func(s string, key bool) bool {
		n := utf8.RuneCountInString(s)
		if len(s) >= 128 || n > 63 || (key && n < 1) || !utf8.ValidString(s) {
			return false
		}
		for i, r := range []rune(s) {
			letter := unicode.Is(unicode.Ll, r) || unicode.Is(unicode.Lo, r)
			if !letter && (key && i == 0 || !(unicode.IsNumber(r) || r == '_' || r == '-')) {
				return false
			}
		}
		return true
	}
	if !part(k, true) || !part(v, false) {
		t.Fatalf("accepted label %q=%q", k, v)
	}
	if k == LabelManagedBy || k == LabelCommit {
		t.Fatalf("accepted the action's own label %s", k)
	}
}

func FuzzLabels(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		c, _ := fuzzParse(t, map[string]string{"INPUT_LABELS": s}, "labels")
		if c == nil {
			return
		}
		if len(c.Labels) > 62 {
			t.Fatalf("accepted %d labels", len(c.Labels))
		}
		for k, v := range c.Labels {
			checkLabel(t, k, v)
		}
	})
}

func FuzzMemory(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		if mi, ok := MemoryMi(s); ok {
			want := strconv.Itoa(mi) + "Mi"
			if strings.HasSuffix(s, "Gi") {
				want = strconv.Itoa(mi/1024) + "Gi"
			}
			if mi <= 0 || want != s {
				t.Fatalf("MemoryMi(%q) = %d", s, mi)
			}
		}
		c, _ := fuzzParse(t, map[string]string{"INPUT_MEMORY": s, "INPUT_CPU": "8"}, "memory", "cpu")
		if c != nil {
			if mi, ok := MemoryMi(c.Memory); !ok || mi < 512 || mi > 32*1024 {
				t.Fatalf("accepted memory %q", c.Memory)
			}
		}
	})
}

func FuzzCPU(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		if m, ok := CPUMillis(s); ok {
			if m%1000 != 0 || m < 1000 || m > 8000 || m == 3000 || m == 5000 || m == 7000 ||
				(s != strconv.Itoa(m/1000) && s != strconv.Itoa(m)+"m") {
				t.Fatalf("CPUMillis(%q) = %d", s, m)
			}
		}
		c, _ := fuzzParse(t, map[string]string{"INPUT_CPU": s, "INPUT_MEMORY": "4Gi"}, "cpu")
		if c != nil {
			if _, ok := CPUMillis(c.CPU); !ok {
				t.Fatalf("accepted cpu %q", c.CPU)
			}
		}
	})
}

var digitsRE = regexp.MustCompile(`^[0-9]+$`)

func FuzzDuration(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		c, _ := fuzzParse(t, map[string]string{"INPUT_TIMEOUT": s}, "timeout")
		if c == nil || strings.TrimSpace(s) == "" {
			return
		}
		d := c.Timeout
		if d < time.Second || d > time.Hour || d%time.Second != 0 {
			t.Fatalf("accepted timeout %q as %s", s, d)
		}
		// A plain number is seconds, computed here without overflow.
		if v := strings.TrimSpace(s); digitsRE.MatchString(v) {
			n, _ := new(big.Int).SetString(v, 10)
			if n.Cmp(big.NewInt(int64(d/time.Second))) != 0 {
				t.Fatalf("timeout %q taken as %s", s, d)
			}
		}
	})
}

var arRepoSegmentRE = regexp.MustCompile(`^[a-z]([a-z0-9-]*[a-z0-9])?$`)

func FuzzImage(f *testing.F) {
	f.Fuzz(func(t *testing.T, image, base string) {
		c, _ := fuzzParse(t, map[string]string{"INPUT_IMAGE": image, "INPUT_BASE_IMAGE": base}, "image", "base_image")
		if c == nil {
			return
		}
		repo, err := name.NewRepository(c.Image, name.StrictValidation)
		if err != nil || repo.Name() != c.Image || strings.ContainsAny(strings.TrimPrefix(c.Image, repo.RegistryStr()), ":@") {
			t.Fatalf("accepted image %q (%v)", c.Image, err)
		}
		if strings.HasSuffix(repo.RegistryStr(), "-docker.pkg.dev") {
			parts := strings.Split(repo.RepositoryStr(), "/")
			if strings.Contains(parts[0], ".") {
				parts = parts[1:] // a domain-scoped project's domain
			}
			if len(parts) < 3 || len(parts[1]) > 63 || !arRepoSegmentRE.MatchString(parts[1]) {
				t.Fatalf("accepted Artifact Registry image %q", c.Image)
			}
		}
		if _, err := name.ParseReference(c.BaseImage, name.StrictValidation); err != nil {
			t.Fatalf("accepted base image %q: %v", c.BaseImage, err)
		}
	})
}

func FuzzCloudSQL(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		c, _ := fuzzParse(t, map[string]string{"INPUT_CLOUDSQL_INSTANCES": s}, "cloudsql_instances")
		if c == nil {
			return
		}
		seen := map[string]bool{}
		for _, inst := range c.CloudSQLInstances {
			parts := strings.Split(inst, ":")
			last := parts[len(parts)-1]
			if seen[inst] || (len(parts) != 3 && len(parts) != 4) || len(last) > 98 || last == "" ||
				last[0] < 'a' || last[0] > 'z' || strings.Trim(last, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
				t.Fatalf("accepted Cloud SQL instance %q", inst)
			}
			seen[inst] = true
		}
	})
}

func FuzzBoolean(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		c, _ := fuzzParse(t, map[string]string{"INPUT_ALLOW_UNAUTHENTICATED": s}, "allow_unauthenticated")
		if v := strings.ToLower(strings.TrimSpace(s)); c != nil && v != "true" && v != "" {
			t.Fatalf("allow_unauthenticated %q accepted", s)
		}
	})
}
