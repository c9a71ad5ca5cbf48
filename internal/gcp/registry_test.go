package gcp

import (
	"testing"

	"golang.org/x/oauth2"
)

func TestRegistryAuth(t *testing.T) {
	t.Parallel()
	cfg, err := RegistryAuth(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "ya29.token"})).Authorization()
	if err != nil || cfg.Username != "_token" || cfg.Password != "ya29.token" {
		t.Errorf("Authorization() = %+v, %v", cfg, err)
	}
}
