package main

import (
	"errors"
	"strings"
	"testing"
)

// The hashes come from werkzeug 3.1.9's generate_password_hash (the version MLflow 3.17.2 installs), each
// checked there with check_password_hash.
func TestCheckPasswordHash(t *testing.T) {
	t.Parallel()
	const pw = "pw-a-0123456789"
	const scryptDefault = "scrypt:32768:8:1$XgzWJZWsGRQpXVZM$3fc454ffdd00899eeb451ac87ed0f33a5c2749637685a227222020fc98c468264df42e3fb31e8adbbc55fc632e0df5094e381e1ac85939a15aeea3e0b8c07e4a"
	const pbkdf2Fast = "pbkdf2:sha256:1000$0o1ZfX980URy43c7$00b001c79d0e0a0bb142cb03cdf93721e195b43f1f5679c986d540c5a6598457"
	tests := []struct {
		name, hash, password string
		want                 bool
		unknown              bool // errHashFormat
	}{
		{name: "scrypt default", hash: scryptDefault, password: pw, want: true},
		{name: "scrypt, wrong password", hash: scryptDefault, password: pw + "x"},
		{name: "scrypt, other salt", hash: strings.Replace(scryptDefault, "$XgzW", "$XgzX", 1), password: pw},
		{name: "scrypt, upper-case hex", hash: strings.Replace(scryptDefault, "3fc454ff", "3FC454FF", 1), password: pw},
		{name: "scrypt N=16384, UTF-8 password", hash: "scrypt:16384:8:1$X0Gmynh72x5qekbc$621871e4d253135220f4abed35c3d9503acb8ece225ed8eabf9a978b60eba40227b440d60f85a35d273b8b0198885ed2b657f9ac0bf991982a721520a61715fc", password: "pässwörd-ü-123", want: true},
		{name: "pbkdf2 sha256", hash: pbkdf2Fast, password: pw, want: true},
		{name: "pbkdf2 sha256, wrong password", hash: pbkdf2Fast, password: "pw-a-012345678"},
		{name: "pbkdf2 sha512", hash: "pbkdf2:sha512:2000$2klE7hOWEFTkKGxT$1c8ae38def02b20ecb0f232cf8f1c8ec30d474c11a86883f297c051bc50ed2192d0d196c8be3363e58207ab703bc180e5dcb65fe928ae100d3ad50024573067f", password: pw, want: true},
		{name: "pbkdf2 sha1", hash: "pbkdf2:sha1:1000$yt3ek0vSmpBTxXCk$57b652100fa29ebee1122407f3aea29c98c1f191", password: pw, want: true},
		{name: "pbkdf2 default iterations", hash: "pbkdf2:sha256:1000000$khoKOLcEGS1KFiTg$c4da4066aabc7e02198a48e4e08c94497e317dca73328ea4b069348f79780b8f", password: pw, want: true},
		{name: "pbkdf2, other iteration count", hash: strings.Replace(pbkdf2Fast, ":1000$", ":1001$", 1), password: pw},
		{name: "pbkdf2 md5", hash: "pbkdf2:md5:1000$salt$00", password: pw, unknown: true},
		{name: "pbkdf2, too many arguments", hash: "pbkdf2:sha256:1:2$salt$00", password: pw, unknown: true},
		{name: "pbkdf2, too many iterations", hash: "pbkdf2:sha256:999999999$salt$00", password: pw, unknown: true},
		{name: "scrypt, huge N", hash: "scrypt:1048576:8:1$salt$00", password: pw, unknown: true},
		{name: "scrypt, N not a power of 2", hash: "scrypt:1000:8:1$salt$00", password: pw, unknown: true},
		{name: "scrypt, an empty argument", hash: "scrypt:$XgzWJZWsGRQpXVZM$3fc454ffdd00899eeb451ac87ed0f33a5c2749637685a227222020fc98c468264df42e3fb31e8adbbc55fc632e0df5094e381e1ac85939a15aeea3e0b8c07e4a", password: pw, unknown: true},
		{name: "scrypt, no arguments", hash: "scrypt$XgzWJZWsGRQpXVZM$3fc454ffdd00899eeb451ac87ed0f33a5c2749637685a227222020fc98c468264df42e3fb31e8adbbc55fc632e0df5094e381e1ac85939a15aeea3e0b8c07e4a", password: pw, want: true},
		{name: "pbkdf2, an empty argument", hash: "pbkdf2:$0o1ZfX980URy43c7$00", password: pw, unknown: true},
		{name: "scrypt, two arguments", hash: "scrypt:32768:8$salt$00", password: pw, unknown: true},
		{name: "scrypt, negative r", hash: "scrypt:32768:-8:1$salt$00", password: pw, unknown: true},
		{name: "argon2", hash: "argon2:x$salt$00", password: pw, unknown: true},
		{name: "plain text", hash: pw, password: pw, unknown: true},
		{name: "empty", hash: "", password: pw, unknown: true},
		{name: "password not UTF-8", hash: pbkdf2Fast, password: "pw-\xff-0123456789", unknown: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := checkPasswordHash(tt.hash, tt.password)
			if tt.unknown {
				if !errors.Is(err, errHashFormat) || got {
					t.Errorf("checkPasswordHash = %v, %v; want errHashFormat", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("checkPasswordHash = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
