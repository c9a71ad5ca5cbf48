package image

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/deploy-mlflow/deploy-mlflow/internal/gcptest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// testRegistry is go-containerregistry's in-process registry behind a handler that records every request
// and can answer some itself, as a real registry refusing them would.
type testRegistry struct {
	*httptest.Server
	host string // 127.0.0.1:PORT

	mu        sync.Mutex
	requests  []*http.Request
	intercept func(w http.ResponseWriter, r *http.Request) bool
}

func newRegistry(tb testing.TB) *testRegistry {
	r := startRegistry()
	tb.Cleanup(r.Close)
	return r
}

// startRegistry is newRegistry for callers that close it themselves, and so let go of its blobs.
func startRegistry() *testRegistry {
	r := &testRegistry{}
	r.Server = httptest.NewServer(r.handler(registry.New(registry.Logger(log.New(io.Discard, "", 0)))))
	r.host = strings.TrimPrefix(r.URL, "http://")
	return r
}

// newTLSRegistry serves the registry over HTTPS and returns a transport that reaches it under any host
// name (such as us-central1-docker.pkg.dev), trusting its certificate.
func newTLSRegistry(tb testing.TB) (*testRegistry, http.RoundTripper) {
	tb.Helper()
	r := &testRegistry{}
	r.Server = httptest.NewUnstartedServer(r.handler(registry.New(registry.Logger(log.New(io.Discard, "", 0)))))
	r.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes cut short when the test ends
	r.StartTLS()
	tb.Cleanup(r.Close)
	r.host = strings.TrimPrefix(r.URL, "https://")
	roots := x509.NewCertPool()
	roots.AddCert(r.Certificate())
	addr := r.Listener.Addr().String()
	return r, &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		// The test certificate is issued for example.com.
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "example.com"},
	}
}

func (r *testRegistry) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.requests = append(r.requests, req.Clone(req.Context()))
		intercept := r.intercept
		r.mu.Unlock()
		if intercept != nil && intercept(w, req) {
			return
		}
		next.ServeHTTP(w, req)
	})
}

func (r *testRegistry) setIntercept(f func(w http.ResponseWriter, r *http.Request) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.intercept = f
}

// reset forgets the requests seen so far.
func (r *testRegistry) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = nil
}

func (r *testRegistry) seen() []*http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*http.Request(nil), r.requests...)
}

// writes lists the requests that change the registry, as "METHOD path".
func (r *testRegistry) writes() []string {
	var out []string
	for _, req := range r.seen() {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			out = append(out, req.Method+" "+req.URL.Path)
		}
	}
	return out
}

// blobUploads counts completed blob uploads: the PUT that carries the digest.
func (r *testRegistry) blobUploads() int {
	n := 0
	for _, req := range r.seen() {
		if req.Method == http.MethodPut && strings.Contains(req.URL.Path, "/blobs/uploads/") {
			n++
		}
	}
	return n
}

func (r *testRegistry) manifestPuts() int {
	n := 0
	for _, req := range r.seen() {
		if req.Method == http.MethodPut && strings.Contains(req.URL.Path, "/manifests/") {
			n++
		}
	}
	return n
}

// blobGets counts blob downloads.
func (r *testRegistry) blobGets() int {
	n := 0
	for _, req := range r.seen() {
		if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/") {
			n++
		}
	}
	return n
}

// registryError answers with a registry error body, as Artifact Registry does.
func writeRegistryError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`, code, message)
}

// baseCreated and baseConfig are the synthetic base's creation time and config.
var (
	baseCreated = gcptest.BaseCreated
	baseConfig  = gcptest.BaseConfig
)

// syntheticBase is an image like the official MLflow one: a Docker or OCI manifest, random layers of the
// given sizes, and a config with Env, Labels and Cmd ["python3"]. seed makes its layers differ.
func syntheticBase(tb testing.TB, mt types.MediaType, arch string, seed uint64, layerSizes ...int) v1.Image {
	tb.Helper()
	img, err := gcptest.NewBaseImage(mt, arch, seed, layerSizes...)
	if err != nil {
		tb.Fatal(err)
	}
	return img
}

// syntheticIndex holds a linux/amd64 and a linux/arm64 image, arm64 first.
func syntheticIndex(tb testing.TB, mt types.MediaType) (v1.ImageIndex, v1.Image) {
	tb.Helper()
	idxType := types.OCIImageIndex
	if mt == types.DockerManifestSchema2 {
		idxType = types.DockerManifestList
	}
	arm := syntheticBase(tb, mt, "arm64", 2, 1000, 2000)
	amd := syntheticBase(tb, mt, "amd64", 1, 1000, 2000)
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, idxType),
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	return idx, amd
}

// fakeServerBinary writes an ELF file for machine with size bytes of random payload; with interp it asks
// for a dynamic loader, as a cgo program does.
func fakeServerBinary(tb testing.TB, machine elf.Machine, interp bool, size int, seed uint64) string {
	tb.Helper()
	const loader = "/lib64/ld-linux-x86-64.so.2\x00"
	progs := []elf.Prog64{{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Vaddr: 0x400000, Paddr: 0x400000, Align: 0x1000}}
	if interp {
		progs = append([]elf.Prog64{{Type: uint32(elf.PT_INTERP), Flags: uint32(elf.PF_R), Filesz: uint64(len(loader)), Memsz: uint64(len(loader)), Align: 1}}, progs...)
	}
	const ehsize, phentsize = 64, 56
	dataOff := uint64(ehsize + phentsize*len(progs))
	if interp {
		progs[0].Off = dataOff
	}
	hdr := elf.Header64{
		Type:      uint16(elf.ET_EXEC),
		Machine:   uint16(machine),
		Version:   uint32(elf.EV_CURRENT),
		Entry:     0x401000,
		Phoff:     ehsize,
		Ehsize:    ehsize,
		Phentsize: phentsize,
		Phnum:     uint16(len(progs)),
		Shentsize: 64,
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)

	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, hdr)
	binary.Write(&buf, binary.LittleEndian, progs)
	if interp {
		buf.WriteString(loader)
	}
	rng := rand.New(rand.NewChaCha8([32]byte{byte(seed), 0xe1}))
	payload := make([]byte, size)
	for i := 0; i+8 <= size; i += 8 {
		binary.LittleEndian.PutUint64(payload[i:], rng.Uint64())
	}
	buf.Write(payload)

	path := filepath.Join(tb.TempDir(), "deploy-mlflow-server")
	if err := os.WriteFile(path, buf.Bytes(), 0o755); err != nil {
		tb.Fatal(err)
	}
	return path
}

// dialTo dials addr whatever address a request names.
func dialTo(addr string) func(ctx context.Context, network, _ string) (net.Conn, error) {
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
}
