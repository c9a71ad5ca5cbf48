package release

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File is one file of the layer: Source on this machine, copied to Path (absolute) in the image.
type File struct {
	Path   string
	Mode   int64
	Source string
}

// epoch is every entry's mtime: the build machine's file times must not reach the digest.
var epoch = time.Unix(0, 0).UTC()

// Layer is a gzip OCI layer holding files, owned by root, with every parent directory (0755) and a /tmp
// (1777: the action writes temporary files, and an empty base has no /tmp).
func Layer(files []File) (v1.Layer, error) {
	entries := map[string]*tar.Header{"tmp": dirHeader("tmp", 0o1777)}
	data := map[string]string{}
	for _, f := range files {
		if !path.IsAbs(f.Path) {
			return nil, fmt.Errorf("image path %q must be absolute", f.Path)
		}
		name := strings.TrimPrefix(path.Clean(f.Path), "/")
		fi, err := os.Stat(f.Source)
		if err != nil {
			return nil, fmt.Errorf("read %s for %s in the image: %w", f.Source, f.Path, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s (for %s in the image) is not a regular file", f.Source, f.Path)
		}
		entries[name] = &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: f.Mode, Size: fi.Size(), ModTime: epoch, Format: tar.FormatPAX}
		data[name] = f.Source
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			if _, ok := entries[dir]; !ok {
				entries[dir] = dirHeader(dir, 0o755)
			}
		}
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	// Sorted, a directory comes before what it holds, and the order never depends on the input's.
	sort.Strings(names)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		h := entries[n]
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("write %s to the layer: %w", n, err)
		}
		if h.Typeflag == tar.TypeReg {
			if err := copyFile(tw, data[n], h.Size); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close the layer's tar: %w", err)
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

func dirHeader(name string, mode int64) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: epoch, Format: tar.FormatPAX}
}

// copyFile copies exactly size bytes, so a file changing under the build fails it instead of corrupting the tar.
func copyFile(w io.Writer, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer f.Close()
	if _, err := io.CopyN(w, f, size); err != nil {
		return fmt.Errorf("copy %s into the layer (did it change during the build?): %w", src, err)
	}
	return nil
}
