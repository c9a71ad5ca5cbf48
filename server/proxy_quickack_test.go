package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
)

// TestProxyConnQuickAck checks that a connection the proxy opens to MLflow is out of Linux's delayed-ACK
// mode after sending a request right after an answer. A plain connection enters that mode there, and then
// acknowledges the next answer's first segment late; MLflow, if its socket has Nagle on, holds back the
// rest of the answer until that acknowledgement (40 ms for log-batch's {}).
func TestProxyConnQuickAck(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				// Answers each "q" at once, as a kept-alive upstream answers each request; nothing else.
				defer c.Close()
				b := make([]byte, 1)
				for {
					if _, err := c.Read(b); err != nil {
						return
					}
					if b[0] == 'q' {
						if _, err := c.Write(b); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	addr := ln.Addr().String()

	// delayedAck sends three requests, each right after the last answer, then one more through send, and
	// reports whether the kernel has c in delayed-ACK (pingpong) mode: TCP_QUICKACK reads 0 then.
	delayedAck := func(t *testing.T, c net.Conn, send func(net.Conn) error) bool {
		t.Helper()
		b := make([]byte, 1)
		for range 3 {
			if _, err := c.Write([]byte("q")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, b); err != nil {
				t.Fatal(err)
			}
		}
		if err := send(c); err != nil {
			t.Fatal(err)
		}
		sc, ok := c.(syscall.Conn)
		if !ok {
			t.Fatalf("%T is not a syscall.Conn", c)
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var quick int
		var serr error
		if err := rc.Control(func(fd uintptr) {
			quick, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK)
		}); err != nil || serr != nil {
			t.Fatal(err, serr)
		}
		return quick == 0
	}
	write := func(c net.Conn) error { _, err := c.Write([]byte("r")); return err }
	// io.Copy from a reader without WriteTo goes through the connection's ReadFrom, as a request body does.
	readFrom := func(c net.Conn) error {
		_, err := io.Copy(c, io.LimitReader(strings.NewReader("r"), 1))
		return err
	}

	plain, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if !delayedAck(t, plain, write) {
		t.Skip("this kernel did not put a plain connection in delayed-ACK mode; nothing to compare")
	}

	dial := newProxy(addr, true, newLogger(io.Discard, newRedactor())).Transport.(*http.Transport).DialContext
	for name, send := range map[string]func(net.Conn) error{"Write": write, "ReadFrom": readFrom} {
		t.Run(name, func(t *testing.T) {
			c, err := dial(context.Background(), "tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if delayedAck(t, c, send) {
				t.Errorf("the proxy's connection to MLflow (%T) is in delayed-ACK mode after sending a request through %s", c, name)
			}
		})
	}
}
