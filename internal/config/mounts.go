package config

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// cloudSQLDir is where Cloud Run mounts Cloud SQL sockets; the cloudrun package mounts them there.
const cloudSQLDir = "/cloudsql"

// reservedDirs are directories the image needs. A secret volume replaces the whole directory it is
// mounted on, so a secret there (or on a parent of one) would hide the server program, Python, the
// system's libraries or its runtime files. /cloudsql is Cloud SQL's socket directory.
var reservedDirs = []string{
	path.Dir(serverenv.BinaryPath), // the server program, the image's entrypoint
	"/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/tmp", "/dev", "/proc", "/sys", "/var/run",
	cloudSQLDir,
}

// secrets reads the extra secrets, each exposed as an env var (ENV=ref) or a file (/dir/file=ref).
func (p *parser) secrets() {
	m := mounts{dirs: map[string]string{}, files: map[string]bool{}}
	for _, item := range splitList(p.input("secrets")) {
		if s, ok := p.secretMount(item, &m); ok {
			p.c.Secrets = append(p.c.Secrets, s)
		}
	}
}

// mounts are the file secrets accepted so far: Cloud Run mounts one secret per directory.
type mounts struct {
	order []string          // directories in input order, for stable messages
	dirs  map[string]string // directory -> project/secret
	files map[string]bool
}

func (p *parser) secretMount(item string, m *mounts) (SecretMount, bool) {
	target, refText, ok := strings.Cut(item, "=")
	target, refText = strings.TrimSpace(target), strings.TrimSpace(refText)
	if !ok || target == "" || refText == "" {
		p.fail("secrets", shown(item), "use ENV=secret[:version] or /mount/path=secret[:version]")
		return SecretMount{}, false
	}
	ref, err := ParseSecretRef(refText, p.c.ProjectID)
	if err != nil {
		p.fail("secrets", shown(target)+"="+shown(refText), err.Error())
		return SecretMount{}, false
	}
	ref.Input = "secrets"
	if !strings.HasPrefix(target, "/") {
		if why := envNameProblem(target); why != "" {
			p.fail("secrets", shown(target)+"="+refText, why)
			return SecretMount{}, false
		}
		return SecretMount{Env: target, Ref: ref}, true
	}
	file := strings.TrimRight(target, "/")
	dir, err := mountDir(file)
	if err != nil {
		p.fail("secrets", shown(target)+"="+refText, err.Error())
		return SecretMount{}, false
	}
	if why := m.add(dir, file, ref.Project+"/"+ref.Secret); why != "" {
		p.fail("secrets", item, why)
		return SecretMount{}, false
	}
	return SecretMount{Path: file, Ref: ref}, true
}

// add records a file secret, or says why it cannot go beside those already recorded.
func (m *mounts) add(dir, file, secret string) string {
	switch {
	case m.files[file]:
		return "another secret is already mounted as " + file + "; give each file its own path"
	case m.dirs[dir] != "" && m.dirs[dir] != secret:
		return "Cloud Run mounts one secret per directory, and " + dir + " already holds another; use another directory"
	}
	for _, d := range m.order {
		// A volume mounted inside another one's directory would hide or be hidden by it.
		if d != dir && (within(dir, d) || within(d, dir)) {
			return fmt.Sprintf("secret directories %s and %s are nested: each secret volume replaces its whole directory, so one would hide the other; use directories side by side, such as /secrets/a and /secrets/b", d, dir)
		}
	}
	if m.dirs[dir] == "" {
		m.order = append(m.order, dir)
	}
	m.dirs[dir], m.files[file] = secret, true
	return ""
}

// mountDir is the directory of the file a secret is mounted as: Cloud Run mounts the secret's volume
// on that whole directory. On failure the error says what to do.
func mountDir(file string) (string, error) {
	dir := path.Dir(file)
	switch {
	case file == "" || !path.IsAbs(file) || path.Clean(file) != file || dir == "/":
		return "", errors.New("mount a secret as a file in its own directory, such as /secrets/credentials.json")
	// VolumeMount.mount_path "Must not contain ':'":
	// https://cloud.google.com/dotnet/docs/reference/Google.Cloud.Run.V2/latest/Google.Cloud.Run.V2.VolumeMount
	case strings.Contains(file, ":"):
		return "", errors.New("Cloud Run refuses a mount path with ':' in it; use a path without one, such as /secrets/credentials.json")
	case strings.IndexFunc(file, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return "", errors.New("a mount path must be printable characters; use a path such as /secrets/credentials.json")
	}
	for _, r := range reservedDirs {
		switch {
		case r == cloudSQLDir && (within(dir, r) || within(r, dir)):
			return "", errors.New("/cloudsql is where Cloud SQL sockets are mounted; choose another directory, such as /secrets")
		case dir == r:
			return "", fmt.Errorf("%s is a directory the image needs: a secret volume hides whatever the image has in the directory it is mounted on; mount the secret in a directory of its own, such as /secrets/%s", dir, path.Base(file))
		case within(dir, r):
			return "", fmt.Errorf("%s is inside %s, which the image needs: a secret volume hides whatever the image has in the directory it is mounted on; mount the secret in a directory of its own, such as /secrets/%s", dir, r, path.Base(file))
		case within(r, dir):
			return "", fmt.Errorf("mounting a secret on %s would hide the image's %s: a secret volume hides whatever the image has in the directory it is mounted on; mount the secret in a directory of its own, such as /secrets/%s", dir, r, path.Base(file))
		}
	}
	return dir, nil
}

// within reports whether dir is base or below it.
func within(dir, base string) bool {
	return dir == base || strings.HasPrefix(dir, strings.TrimSuffix(base, "/")+"/")
}
