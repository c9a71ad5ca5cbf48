package main

import (
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/scrypt"
)

// errHashFormat is checkPasswordHash's answer for a stored hash it cannot judge: the caller then lets
// MLflow's own code decide.
var errHashFormat = errors.New("not a password hash format this server verifies")

// Bounds on the cost parameters that checkPasswordHash accepts. werkzeug 3.1 writes scrypt:32768:8:1 (32 MiB,
// a fraction of a second) and pbkdf2 with 1,000,000 iterations; a stored hash asking for much more is
// not one MLflow wrote, and would only make the start slow or exhaust memory.
const (
	maxScryptMemory     = 256 << 20 // 128·N·r·p bytes
	maxPBKDF2Iterations = 10_000_000
)

// checkPasswordHash reports whether password matches pwhash, a hash as werkzeug.security's
// generate_password_hash writes it ("method$salt$hex"), the way check_password_hash decides: it recomputes
// the key with the method, its parameters and the salt, and compares the hex strings. The methods are
// werkzeug 3.1's: "scrypt[:N:r:p]" (default 2^15, 8, 1; 64-byte key) and "pbkdf2[:hash[:iterations]]"
// (default sha256, 1,000,000; the hash's own length). Python encodes the salt and password as UTF-8, and
// cannot encode a password that is not valid UTF-8; such a password, and any other method, parameters or
// shape, get errHashFormat.
func checkPasswordHash(pwhash, password string) (bool, error) {
	method, rest, ok := strings.Cut(pwhash, "$")
	salt, want, ok2 := strings.Cut(rest, "$")
	if !ok || !ok2 || !utf8.ValidString(password) || !utf8.ValidString(salt) {
		return false, errHashFormat
	}
	// As werkzeug splits it: "scrypt:" has one empty argument, which it refuses, not none.
	parts := strings.Split(method, ":")
	name, args := parts[0], parts[1:]
	var got []byte
	switch name {
	case "scrypt":
		n, r, p := 1<<15, 8, 1
		if len(args) != 0 {
			if len(args) != 3 {
				return false, fmt.Errorf("%w: %q", errHashFormat, method)
			}
			var err error
			if n, r, p, err = atoi3(args); err != nil {
				return false, fmt.Errorf("%w: %q", errHashFormat, method)
			}
		}
		if n < 2 || n&(n-1) != 0 || r < 1 || p < 1 || int64(r)*int64(p) >= 1<<30 || 128*int64(n)*int64(r)*int64(p) > maxScryptMemory {
			return false, fmt.Errorf("%w: scrypt parameters %q", errHashFormat, method)
		}
		key, err := scrypt.Key([]byte(password), []byte(salt), n, r, p, 64)
		if err != nil {
			return false, fmt.Errorf("%w: %v", errHashFormat, err)
		}
		got = key
	case "pbkdf2":
		hashName, iterations := "sha256", 1_000_000
		switch len(args) {
		case 0:
		case 1:
			hashName = args[0]
		case 2:
			hashName = args[0]
			it, err := strconv.Atoi(args[1])
			if err != nil {
				return false, fmt.Errorf("%w: %q", errHashFormat, method)
			}
			iterations = it
		default:
			return false, fmt.Errorf("%w: %q", errHashFormat, method)
		}
		var h func() hash.Hash
		switch hashName {
		case "sha256":
			h = sha256.New
		case "sha512":
			h = sha512.New
		case "sha1":
			h = sha1.New
		default:
			return false, fmt.Errorf("%w: pbkdf2 with %q", errHashFormat, hashName)
		}
		if iterations < 1 || iterations > maxPBKDF2Iterations {
			return false, fmt.Errorf("%w: pbkdf2 with %d iterations", errHashFormat, iterations)
		}
		key, err := pbkdf2.Key(h, password, []byte(salt), iterations, h().Size())
		if err != nil {
			return false, fmt.Errorf("%w: %v", errHashFormat, err)
		}
		got = key
	default:
		return false, fmt.Errorf("%w: method %q", errHashFormat, name)
	}
	// hmac.compare_digest of the hex strings: lower-case hex, as Python's bytes.hex writes it.
	return subtle.ConstantTimeCompare([]byte(hex.EncodeToString(got)), []byte(want)) == 1, nil
}

// atoi3 parses scrypt's three parameters, as Python's int would (no signs or spaces accepted here).
func atoi3(s []string) (a, b, c int, err error) {
	var v [3]int
	for i, x := range s {
		if x == "" || strings.TrimLeft(x, "0123456789") != "" {
			return 0, 0, 0, errHashFormat
		}
		if v[i], err = strconv.Atoi(x); err != nil {
			return 0, 0, 0, err
		}
	}
	return v[0], v[1], v[2], nil
}
