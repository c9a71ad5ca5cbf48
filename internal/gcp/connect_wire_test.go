package gcp

import (
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"golang.org/x/oauth2"
)

// TestClientOptionsOnTheWire checks what a client made from ClientOptions sends first: a TLS handshake
// to a name (localhost, though it resolves to this machine: a hosts file could point it elsewhere), and
// plaintext HTTP/2, whose headers carry the access token, only to a literal loopback address.
func TestClientOptionsOnTheWire(t *testing.T) {
	t.Parallel()
	const http2Preface = "PRI * HTTP/2.0"
	for _, tc := range []struct {
		host  string
		first []byte // the first bytes the server must see
	}{
		{"localhost", []byte{0x16, 0x03}}, // a TLS record carrying a handshake: the ClientHello
		{"127.0.0.1", []byte(http2Preface)},
	} {
		t.Run(tc.host, func(t *testing.T) {
			t.Parallel()
			port, first := firstBytes(t, len(tc.first))
			opts, err := ClientOptions(net.JoinHostPort(tc.host, port), oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "ya29.test-token"}))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			client, err := run.NewServicesClient(ctx, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			go func() {
				_, _ = client.GetService(ctx, &runpb.GetServiceRequest{Name: "projects/p/locations/us-central1/services/s"})
			}()
			select {
			case got := <-first:
				if !bytes.Equal(got, tc.first) {
					t.Errorf("the client to %s began with %q, want %q", tc.host, got, tc.first)
				}
			case <-ctx.Done():
				t.Fatalf("no connection to %s within 10s", tc.host)
			}
		})
	}
}

// firstBytes listens on the loopback addresses that localhost may resolve to, on one port, and sends the
// first n bytes of the first connection.
func firstBytes(t *testing.T, n int) (port string, first <-chan []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port = strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	listeners := []net.Listener{ln}
	if ln6, err := net.Listen("tcp", "[::1]:"+port); err == nil {
		listeners = append(listeners, ln6)
	}
	out := make(chan []byte, len(listeners))
	for _, l := range listeners {
		t.Cleanup(func() { l.Close() })
		go func() {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			b := make([]byte, n)
			if _, err := io.ReadFull(conn, b); err == nil {
				out <- b
			}
		}()
	}
	return port, out
}
