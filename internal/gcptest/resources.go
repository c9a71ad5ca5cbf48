package gcptest

import (
	"strconv"
	"strings"
	"sync"
	"time"
)

// The project every stand-in knows unless told of others with WithProject.
const (
	DefaultProjectID     = "test-project"
	DefaultProjectNumber = "123456789012"
)

// project is a known project, reached by its ID or its number.
type project struct {
	id, number string
}

// lookupProject resolves a project ID or number.
func (s *settings) lookupProject(idOrNumber string) (project, bool) {
	if n, ok := s.projects[idOrNumber]; ok {
		return project{id: idOrNumber, number: n}, true
	}
	for id, n := range s.projects {
		if n == idOrNumber {
			return project{id: id, number: n}, true
		}
	}
	return project{}, false
}

// splitName splits a resource name into its segments and checks that the collection segments (the even
// ones) are as expected, e.g. splitName(name, "projects", "secrets") for "projects/p/secrets/s".
func splitName(name string, collections ...string) ([]string, bool) {
	parts := strings.Split(name, "/")
	if len(parts) != 2*len(collections) {
		return nil, false
	}
	for i, c := range collections {
		if parts[2*i] != c || parts[2*i+1] == "" {
			return nil, false
		}
	}
	return parts, true
}

var etagCounter struct {
	sync.Mutex
	n int64
}

// newEtag returns a quoted etag that differs from every earlier one.
func newEtag() string {
	etagCounter.Lock()
	defer etagCounter.Unlock()
	etagCounter.n = max(etagCounter.n+1, time.Now().UnixMicro())
	return `"` + strconv.FormatInt(etagCounter.n, 16) + `"`
}
