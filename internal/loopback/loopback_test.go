package loopback

import "testing"

func TestHostPort(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{
		"127.0.0.1": true, "127.0.0.1:5000": true, "127.9.8.7:1": true, "[::1]:443": true, "::1": true,
		"localhost": false, "localhost:5000": false, "10.0.0.1:443": false, "192.168.1.2": false,
		"run.googleapis.com:443": false, "us-central1-docker.pkg.dev": false, "": false,
	} {
		if got := HostPort(in); got != want {
			t.Errorf("HostPort(%q) = %v, want %v", in, got, want)
		}
	}
}
