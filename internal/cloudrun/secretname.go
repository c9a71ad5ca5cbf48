package cloudrun

import "strings"

// ProjectNumbers maps project IDs to project numbers. Cloud Run may answer projects/NUMBER/secrets/S for
// a secret it was sent as S or as projects/ID/secrets/S; knowing the numbers lets the two read as one.
type ProjectNumbers map[string]string

// secretNames compares secret references by project and secret ID, whichever form names them.
type secretNames struct {
	own string            // the service's project, as the desired service names it
	ids map[string]string // project number -> project ID
}

// newSecretNames learns the service's own project from desired's name and, when Cloud Run answered the
// live service's name with the project number, that number too.
func newSecretNames(live, desired string, numbers ProjectNumbers) secretNames {
	s := secretNames{own: nameProject(desired), ids: map[string]string{}}
	for id, n := range numbers {
		s.ids[n] = id
	}
	if lp := nameProject(live); lp != "" && lp != s.own {
		s.ids[lp] = s.own
	}
	return s
}

// same tells whether two secret references name the same secret. A project number it does not know
// reads as a project of its own: at worst an unneeded update, never a missed one.
func (s secretNames) same(live, desired string) bool {
	lp, ls := s.split(live)
	dp, ds := s.split(desired)
	return lp == dp && ls == ds
}

// split reads S or projects/P/secrets/S into the secret's project (as an ID where known) and its ID.
func (s secretNames) split(ref string) (project, secret string) {
	p := strings.Split(ref, "/")
	if len(p) != 4 || p[0] != "projects" || p[2] != "secrets" {
		return s.own, ref
	}
	if id, ok := s.ids[p[1]]; ok {
		return id, p[3]
	}
	return p[1], p[3]
}

// nameProject is the project segment of projects/P/..., or "".
func nameProject(name string) string {
	p := strings.SplitN(name, "/", 3)
	if len(p) < 3 || p[0] != "projects" {
		return ""
	}
	return p[1]
}
