package main

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"testing"
)

func basic(userpass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(userpass))
}

func TestParseBasicAuth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, header, user, pass string
		ok                       bool
	}{
		{"valid", basic("alice:s3cret"), "alice", "s3cret", true},
		{"scheme is case-insensitive", "bAsIc " + base64.StdEncoding.EncodeToString([]byte("a:b")), "a", "b", true},
		{"extra spaces", "  Basic   " + base64.StdEncoding.EncodeToString([]byte("a:b")) + " ", "a", "b", true},
		{"colon in password", basic("a:b:c"), "a", "b:c", true},
		{"empty password", basic("a:"), "a", "", true},
		{"UTF-8", basic("zoë:pässwörd"), "zoë", "pässwörd", true},
		{"missing", "", "", "", false},
		{"scheme only", "Basic", "", "", false},
		{"other scheme", "Bearer " + base64.StdEncoding.EncodeToString([]byte("a:b")), "", "", false},
		{"not base64", "Basic !!!not-base64!!!", "", "", false},
		{"no colon", basic("alice"), "", "", false},
		{"unpadded base64", "Basic " + base64.RawStdEncoding.EncodeToString([]byte("a:bc")), "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, pass, ok := parseBasicAuth(tt.header)
			if user != tt.user || pass != tt.pass || ok != tt.ok {
				t.Errorf("parseBasicAuth(%q) = %q, %q, %v; want %q, %q, %v", tt.header, user, pass, ok, tt.user, tt.pass, tt.ok)
			}
		})
	}
}

func TestBasicAuthAllowed(t *testing.T) {
	t.Parallel()
	a := newBasicAuth("alice", "s3cret")
	tests := []struct {
		header string
		want   bool
	}{
		{basic("alice:s3cret"), true},
		{basic("alice:wrong"), false},
		{basic("bob:s3cret"), false},
		{basic("alice:s3cret-and-more"), false},
		{basic("alice:"), false},
		{basic(":"), false},
		{"", false},
		{"Basic", false},
		{"garbage", false},
	}
	for _, tt := range tests {
		if got := a.allowed(tt.header); got != tt.want {
			t.Errorf("allowed(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
}

func TestUnauthorized(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	unauthorized(rec)
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("status %d", rec.Code)
	}
	if got := rec.Header().Get("WWW-Authenticate"); got != `Basic realm="mlflow", charset="UTF-8"` {
		t.Errorf("WWW-Authenticate = %q", got)
	}
}
