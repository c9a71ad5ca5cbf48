package action

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfile checks that the action's image is what GitHub and the action expect: built in stages,
// run as root (GitHub writes $GITHUB_OUTPUT as root), with the server program where the action looks
// for it by default.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	if n := len(regexp.MustCompile(`(?m)^FROM `).FindAllString(df, -1)); n < 2 {
		t.Errorf("the Dockerfile has %d stages; build in one and ship a minimal image", n)
	}
	if !regexp.MustCompile(`(?m)^COPY --from=\S+ \S+ ` + regexp.QuoteMeta(DefaultServerBinary) + `$`).MatchString(df) {
		t.Errorf("the Dockerfile does not put the server program at %s", DefaultServerBinary)
	}
	if !regexp.MustCompile(`(?m)^USER (0|root)(:0|:root)?$`).MatchString(df) {
		t.Error("the action's image must run as root: GitHub runs container actions as root")
	}
	if !strings.Contains(df, "CGO_ENABLED=0") {
		t.Error("the binaries must be static (CGO_ENABLED=0) to run on a minimal base")
	}
}
