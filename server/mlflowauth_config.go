package main

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// permissions are the values MLflow's auth app accepts for default_permission (mlflow.server.auth.permissions).
var permissions = []string{"READ", "EDIT", "MANAGE", "NO_PERMISSIONS"}

const (
	defaultPermission = "READ"
	// flaskKeyInfo is the HKDF info from which every instance derives the same Flask secret key.
	flaskKeyInfo = "deploy-mlflow flask secret key"
	// legacyAdminPassword is the admin password that MLflow's basic_auth.ini once shipped; MLflow 3.17
	// refuses to create or log in an admin with it (GHSA-gq3w-7jj3-x7gr).
	legacyAdminPassword = "password1234"
	// kekVersionEnv is MLflow's variable for the version of the KEK that wraps new gateway keys and
	// unwraps stored ones (default 1); `mlflow crypto rotate-kek` moves keys to the next version.
	kekVersionEnv = "MLFLOW_CRYPTO_KEK_VERSION"
)

// loadMLflowAuth reads the settings of auth mode mlflow (and the KEK settings, which apply in every mode)
// into c, returning what is wrong with them.
func (c *config) loadMLflowAuth(e env) []error {
	var errs []error
	c.kekPassphrase = e.getenv(serverenv.KEKPassphrase)
	if v := strings.TrimSpace(e.getenv(kekVersionEnv)); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("%s=%q is not a KEK version: set a whole number from 1 (the version `mlflow crypto rotate-kek` printed), or leave it unset for the server to read it from the database", kekVersionEnv, v))
		} else {
			c.kekVersion = n
		}
	}

	perm := strings.ToUpper(strings.TrimSpace(e.getenv(serverenv.DefaultPermission)))
	if c.auth != serverenv.AuthMLflow {
		if perm != "" {
			c.warnings = append(c.warnings, fmt.Sprintf("%s is set but %s is %q: it applies only with %s=%s, and is ignored", serverenv.DefaultPermission, serverenv.Auth, c.auth, serverenv.Auth, serverenv.AuthMLflow))
		}
		return errs
	}
	if perm == "" {
		perm = defaultPermission
	}
	if !contains(permissions, perm) {
		errs = append(errs, fmt.Errorf("%s=%q is not a permission of MLflow's auth app: set one of %s (default %s)",
			serverenv.DefaultPermission, e.getenv(serverenv.DefaultPermission), strings.Join(permissions, ", "), defaultPermission))
	}
	c.defaultPermission = perm

	if c.username == "" || c.password == "" {
		errs = append(errs, fmt.Errorf("%s is %q but %s and %s are not both set: set both (from secrets); they name MLflow's admin user and its password",
			serverenv.Auth, serverenv.AuthMLflow, serverenv.Username, serverenv.Password))
		return errs
	}
	if strings.Contains(c.username, ":") || strings.ContainsAny(c.username, "\r\n") {
		errs = append(errs, fmt.Errorf("%s contains a colon or a line break, which HTTP basic auth cannot carry in a user name: choose an admin user name without one", serverenv.Username))
	}
	switch {
	case utf8.RuneCountInString(c.password) < minPasswordLength:
		// MLflow refuses the same (mlflow.utils.validation._validate_password); saying so here names the secret.
		errs = append(errs, fmt.Errorf("%s is shorter than %d characters, which MLflow's auth app refuses for its admin: add a longer version to the password secret (e.g. openssl rand -base64 24 | gcloud secrets versions add SECRET --data-file=-) and deploy again",
			serverenv.Password, minPasswordLength))
	case c.password == legacyAdminPassword:
		errs = append(errs, fmt.Errorf("%s is the default admin password that older MLflow versions shipped, which MLflow refuses: add another version to the password secret and deploy again", serverenv.Password))
	}

	c.flaskSecretKey = e.getenv(serverenv.FlaskSecretKey)
	if c.flaskSecretKey == "" {
		c.flaskSecretKey = deriveFlaskSecretKey(c.password)
	}
	return errs
}

// deriveFlaskSecretKey derives the Flask secret key from the admin password, so that every instance,
// given the same password, signs CSRF tokens alike: the hex of 32 bytes of HKDF-SHA256 (no salt, info
// flaskKeyInfo). A new password makes a new key, which only invalidates the sign-up form's open tokens.
func deriveFlaskSecretKey(password string) string {
	key, err := hkdf.Key(sha256.New, []byte(password), nil, flaskKeyInfo, 32)
	if err != nil {
		// Only a length beyond 255 hashes fails.
		panic(err)
	}
	return hex.EncodeToString(key)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
