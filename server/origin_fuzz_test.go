package main

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzCrossOriginWrite checks the origin rule's properties on any input: reads with at most one Origin
// always pass; two Origins never do; a cross-site write never does; a write that passes with an Origin
// names the very host it was sent to; and a write whose Origin is the host it was sent to passes.
func FuzzCrossOriginWrite(f *testing.F) {
	f.Fuzz(func(t *testing.T, method, host, origin, origin2, fetchSite string) {
		origins := []string{origin}
		if origin2 != "" {
			origins = append(origins, origin2)
			if crossOriginWrite(method, host, origins, fetchSite) == "" {
				t.Fatalf("%s with Origins %q passed", method, origins)
			}
			return
		}
		reason := crossOriginWrite(method, host, origins, fetchSite)
		write := method == "POST" || method == "PUT" || method == "PATCH" || method == "DELETE"
		if !write {
			if reason != "" {
				t.Fatalf("%s (a read) refused: %s", method, reason)
			}
			return
		}
		if strings.EqualFold(fetchSite, "cross-site") && reason == "" {
			t.Fatalf("%s marked cross-site passed", method)
		}
		if reason == "" && origin != "" {
			u, err := url.Parse(origin)
			if err != nil || !strings.EqualFold(u.Hostname(), strings.Trim(hostName(host), "[]")) {
				t.Fatalf("%s from Origin %q to host %q passed", method, origin, host)
			}
		}
		// The UI's own writes: the browser sends the Origin of the name it reached the server under.
		// (Only for host names of letters, digits, dots and hyphens: a malformed Host may be refused.)
		if isDNSName(host) && !strings.EqualFold(fetchSite, "cross-site") {
			if r := crossOriginWrite(method, host, []string{"https://" + host}, fetchSite); r != "" {
				t.Fatalf("%s from its own origin https://%s refused: %s", method, host, r)
			}
		}
	})
}

func hostName(host string) string {
	if i := strings.LastIndex(host, ":"); i >= 0 && !strings.HasSuffix(host, "]") {
		return host[:i]
	}
	return host
}

func isDNSName(host string) bool {
	if host == "" {
		return false
	}
	for _, c := range host {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}
