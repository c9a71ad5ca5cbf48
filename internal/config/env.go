package config

import (
	"errors"
	"path"
	"regexp"
	"strings"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// reservedEnv are names the container may not set: Cloud Run's own, and the server's.
var reservedEnv = map[string]bool{
	"PORT": true, "K_SERVICE": true, "K_REVISION": true, "K_CONFIGURATION": true,
	serverenv.BackendStoreURI: true, serverenv.ArtifactsDestination: true, serverenv.Auth: true,
	serverenv.Username: true, serverenv.Password: true,
}

// secrets reads the extra secrets, each exposed as an env var (ENV=ref) or a file (/dir/file=ref).
func (p *parser) secrets() {
	dirs := map[string]string{} // mount directory -> project/secret, since Cloud Run mounts one secret per directory
	for _, item := range splitList(p.input("secrets")) {
		if m, ok := p.secretMount(item, dirs); ok {
			p.c.Secrets = append(p.c.Secrets, m)
		}
	}
}

func (p *parser) secretMount(item string, dirs map[string]string) (SecretMount, bool) {
	target, refText, ok := strings.Cut(item, "=")
	target, refText = strings.TrimSpace(target), strings.TrimSpace(refText)
	if !ok || target == "" || refText == "" {
		p.fail("secrets", shown(item), "use ENV=secret[:version] or /mount/path=secret[:version]")
		return SecretMount{}, false
	}
	ref, err := ParseSecretRef(refText, p.c.ProjectID)
	if err != nil {
		p.fail("secrets", target+"="+shown(refText), err.Error())
		return SecretMount{}, false
	}
	ref.Input = "secrets"
	if !strings.HasPrefix(target, "/") {
		if !envNameRE.MatchString(target) {
			p.fail("secrets", item, "an environment variable name is letters, digits and underscores, not starting with a digit")
			return SecretMount{}, false
		}
		return SecretMount{Env: target, Ref: ref}, true
	}
	file := strings.TrimRight(target, "/")
	dir, err := mountDir(file)
	if err != nil {
		p.fail("secrets", item, err.Error())
		return SecretMount{}, false
	}
	secret := ref.Project + "/" + ref.Secret
	if dirs[dir] != "" && dirs[dir] != secret {
		p.fail("secrets", item, "Cloud Run mounts one secret per directory, and "+dir+" already holds another; use another directory")
		return SecretMount{}, false
	}
	dirs[dir] = secret
	return SecretMount{Path: file, Ref: ref}, true
}

// mountDir is the directory of the file a secret is mounted as. Cloud Run's secret volume takes over
// that whole directory, so it may not be / or Cloud SQL's socket directory.
func mountDir(file string) (string, error) {
	dir := path.Dir(file)
	switch {
	case file == "" || path.Clean(file) != file || dir == "/":
		return "", errors.New("mount a secret as a file in its own directory, such as /secrets/credentials.json")
	case dir == "/cloudsql" || strings.HasPrefix(dir, "/cloudsql/"):
		return "", errors.New("/cloudsql is where Cloud SQL sockets are mounted; choose another directory")
	}
	return dir, nil
}

// env reads the plain env vars, then refuses names that are reserved or set twice.
func (p *parser) env() {
	for _, item := range splitList(p.input("env_vars")) {
		k, v, ok := strings.Cut(item, "=")
		k = strings.TrimSpace(k)
		if !ok || !envNameRE.MatchString(k) {
			// Only the name is echoed: the value may be sensitive.
			p.fail("env_vars", shown(k), "use KEY=VALUE, where KEY is letters, digits and underscores")
			continue
		}
		p.c.EnvVars = append(p.c.EnvVars, EnvVar{Name: k, Value: v})
	}
	p.checkEnvClash()
}

func (p *parser) checkEnvClash() {
	seen := map[string]string{} // name -> the input that set it
	check := func(input, name string) {
		switch {
		case reservedEnv[name]:
			p.fail(input, name, "this variable is set by Cloud Run or by deploy-mlflow itself; use the matching input instead")
		case seen[name] != "":
			p.fail(input, name, "is also set by "+seen[name]+"; set each variable once")
		default:
			seen[name] = input
		}
	}
	for _, m := range p.c.Secrets {
		if m.Env != "" {
			check("secrets", m.Env)
		}
	}
	for _, e := range p.c.EnvVars {
		check("env_vars", e.Name)
	}
}
