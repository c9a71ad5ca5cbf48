package main

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// crossOriginWrite returns why a request must be refused as a cross-origin write, or "" if it may pass.
// A write (POST, PUT, PATCH, DELETE) is cross-origin when the browser says so (Sec-Fetch-Site: cross-site)
// or when its Origin names another host than the one the request came in on. Comparing with the request's
// own Host is what lets the UI work under any name the service is reached by (*.run.app, a custom domain)
// without knowing it in advance. Requests without Origin (MLflow's clients, curl) are not from a browser
// page of another site, and pass. Any request with more than one Origin header is refused: browsers send
// one at most, and which of several to check would be a guess.
func crossOriginWrite(method, host string, origins []string, fetchSite string) string {
	if len(origins) > 1 {
		return fmt.Sprintf("it carries %d Origin headers, where a browser sends one at most", len(origins))
	}
	switch method {
	case "POST", "PUT", "PATCH", "DELETE":
	default:
		return ""
	}
	if strings.EqualFold(fetchSite, "cross-site") {
		return "the browser marks it Sec-Fetch-Site: cross-site"
	}
	if len(origins) == 0 || origins[0] == "" {
		return ""
	}
	origin := origins[0]
	if origin == "null" {
		return "its Origin is opaque (null)"
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Sprintf("its Origin %q is not an http(s) origin", origin)
	}
	if !sameHost(u, host) {
		return fmt.Sprintf("its Origin %s is not the host it was sent to (%s)", origin, host)
	}
	return ""
}

// sameHost compares an origin with a Host header: same name (case-insensitively), and the same port, where
// a Host without a port matches the origin's scheme default (TLS ends before the server, so the Host does
// not say which scheme the browser used).
func sameHost(origin *url.URL, host string) bool {
	oName, oPort := strings.ToLower(origin.Hostname()), origin.Port()
	if oPort == "" {
		oPort = map[string]string{"http": "80", "https": "443"}[origin.Scheme]
	}
	hName, hPort, err := net.SplitHostPort(host)
	if err != nil {
		hName, hPort = host, ""
	}
	hName = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(hName, "["), "]"))
	if oName != hName || oName == "" {
		return false
	}
	if hPort == "" {
		return oPort == "80" || oPort == "443"
	}
	return hPort == oPort
}
