package gcptest

import (
	"strings"
	"testing"
)

func TestLookupProject(t *testing.T) {
	t.Parallel()
	s := newSettings([]Option{WithProject("my-project", "111"), WithProject("other", "222")})
	tests := []struct {
		in, wantID, wantNumber string
		ok                     bool
	}{
		{"my-project", "my-project", "111", true},
		{"222", "other", "222", true},
		{"test-project", "", "", false}, // the default exists only without WithProject
		{"333", "", "", false},
	}
	for _, tt := range tests {
		p, ok := s.lookupProject(tt.in)
		if ok != tt.ok || p.id != tt.wantID || p.number != tt.wantNumber {
			t.Errorf("lookupProject(%q) = %+v, %v", tt.in, p, ok)
		}
	}
	if p, ok := newSettings(nil).lookupProject(DefaultProjectID); !ok || p.number != DefaultProjectNumber {
		t.Errorf("the default project = %+v, %v", p, ok)
	}
}

func TestSplitName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		collections []string
		ok          bool
	}{
		{"projects/p/secrets/s", []string{"projects", "secrets"}, true},
		{"projects/p/secrets/", []string{"projects", "secrets"}, false},
		{"projects/p/locations/l/services/s", []string{"projects", "locations", "services"}, true},
		{"projects/p/regions/l/services/s", []string{"projects", "locations", "services"}, false},
		{"projects/p", []string{"projects", "secrets"}, false},
	}
	for _, tt := range tests {
		if _, ok := splitName(tt.name, tt.collections...); ok != tt.ok {
			t.Errorf("splitName(%q, %s) ok = %v, want %v", tt.name, strings.Join(tt.collections, ","), ok, tt.ok)
		}
	}
}
