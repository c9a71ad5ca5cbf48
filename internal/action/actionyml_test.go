package action

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
)

// TestInputsAgree checks that action.yml declares exactly the inputs the program reads, and that the
// README documents each of them and every output.
func TestInputsAgree(t *testing.T) {
	t.Parallel()
	var read []string
	_, _ = config.Parse(func(k string) string {
		if name, ok := strings.CutPrefix(k, "INPUT_"); ok && !slices.Contains(read, strings.ToLower(name)) {
			read = append(read, strings.ToLower(name))
		}
		return ""
	})
	slices.Sort(read)

	yml, err := os.ReadFile("../../action.yml")
	if err != nil {
		t.Fatal(err)
	}
	inputs, outputs := yamlKeys(t, string(yml), "inputs"), yamlKeys(t, string(yml), "outputs")
	slices.Sort(inputs)
	if !slices.Equal(inputs, read) {
		t.Errorf("action.yml declares inputs %v\nthe program reads %v", inputs, read)
	}
	if want := []string{"url", "revision", "image", "service", "previous_revision", "changed"}; !slices.Equal(outputs, want) {
		t.Errorf("action.yml declares outputs %v, the program writes %v", outputs, want)
	}

	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range append(inputs, outputs...) {
		if !regexp.MustCompile("(?m)^\\| [^|]*`" + name + "`").Match(readme) {
			t.Errorf("README.md has no table row for %s", name)
		}
	}
}

// yamlKeys lists the keys directly under a top-level section of action.yml.
func yamlKeys(t *testing.T, yml, section string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(yml, "\n"+section+":\n")
	if !ok {
		t.Fatalf("action.yml has no %s section", section)
	}
	var keys []string
	key := regexp.MustCompile(`^  ([a-z_]+):$`)
	for _, line := range strings.Split(rest, "\n") {
		if line != "" && !strings.HasPrefix(line, " ") {
			break
		}
		if m := key.FindStringSubmatch(line); m != nil {
			keys = append(keys, m[1])
		}
	}
	return keys
}
