// Package loopback holds the one rule for when the action may speak plaintext: only to a loopback
// address (127.0.0.0/8 or ::1), where an emulator or a test registry runs on the same machine. A name
// such as localhost is not trusted, since a hosts file could point it anywhere.
package loopback

import (
	"net"
	"strings"
)

// Host tells whether host (an address, possibly in brackets, without a port) is a loopback address.
func Host(host string) bool {
	ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	return ip != nil && ip.IsLoopback()
}

// HostPort is Host for a host:port, or a bare host.
func HostPort(hostport string) bool {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return Host(h)
	}
	return Host(hostport)
}
