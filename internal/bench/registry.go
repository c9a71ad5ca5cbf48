package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/deploy-mlflow/deploy-mlflow/internal/image"
	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
	"github.com/deploy-mlflow/deploy-mlflow/internal/testenv"
)

const (
	// registryRuns first deploys of each side are timed, after one untimed pair that warms the page cache
	// and both registries; the side that goes first alternates from run to run.
	registryRuns = 5
	craneModule  = "github.com/google/go-containerregistry"
)

// registries is the registry group's world: the source registry holding the generated base and the
// destination registry, each behind a counting proxy, and crane built at the module's version.
type registries struct {
	src, dst   *countingProxy
	base       string // src/mlflow/base:v1, through the proxy
	crane      string
	layerTar   string // the server program as crane append's layer tarball
	blobs      int64  // sum of the base's compressed layers and config
	baseLayers int
}

func registryTraffic(ctx context.Context, w *world, r *report) error {
	rs, cleanup, err := startRegistries(ctx, w)
	if err != nil {
		return err
	}
	defer cleanup()
	s := r.section("2. Registry traffic", "go run ./internal/bench -groups registry", registryRuns)
	s.add("\nTwo docker-registry processes on loopback, each behind a counting reverse proxy (every request and body byte, by method and path class). "+
		"The source holds a generated base image of %d layers, %s compressed in all with its config (incompressible pseudo-random bytes from fixed seeds, cached in %s). "+
		"Ours: internal/image's Base, Build (base + server layer + config, as the action does) and Push to a new repository. "+
		"Baseline: crane %s (built with `go build ./cmd/crane` from the module cache, the version go.mod requires, so both sides run the same go-containerregistry) "+
		"running `%s` then `%s`, where the layer tarball is the same server layer already gzip'd (crane does not compress it; ours does, inside Build). "+
		"Each first-deploy run writes to a repository that has never existed. One untimed pair runs first (page cache, registries warm); then the side that goes first alternates.",
		rs.baseLayers, fmtBytes(rs.blobs), w.cache, strings.TrimPrefix(rs.craneVersion(), "v"),
		"crane copy --insecure SRC/mlflow/base:v1 DST/crane-N:v1", "crane append --insecure -b DST/crane-N:v1 -f server-layer.tar.gz -t DST/crane-N:v1")

	var oursT, craneT, buildT []float64
	var oursSrc, oursDst, craneSrc, craneDst map[string]traffic
	var last name.Tag
	var img v1.Image
	ours := func(i int) error {
		rs.src.take()
		rs.dst.take()
		start := time.Now()
		tag, pushed, build, err := rs.deployOurs(ctx, w.server, fmt.Sprintf("ours-%d", i), "rev0")
		if err != nil {
			return err
		}
		oursT, buildT = append(oursT, secs(time.Since(start))), append(buildT, secs(build))
		oursSrc, oursDst, last, img = rs.src.take(), rs.dst.take(), tag, pushed
		return nil
	}
	crane := func(i int) error {
		rs.src.take()
		rs.dst.take()
		start := time.Now()
		if err := rs.deployCrane(ctx, fmt.Sprintf("crane-%d", i)); err != nil {
			return err
		}
		craneT = append(craneT, secs(time.Since(start)))
		craneSrc, craneDst = rs.src.take(), rs.dst.take()
		return nil
	}
	for i := -1; i < registryRuns; i++ {
		first, second := ours, crane
		if i%2 != 0 {
			first, second = crane, ours
		}
		if err := first(i + 1); err != nil {
			return err
		}
		if err := second(i + 1); err != nil {
			return err
		}
		if i < 0 { // the warm-up pair
			oursT, craneT, buildT = nil, nil, nil
		}
	}
	layer, err := serverLayerSize(img)
	if err != nil {
		return err
	}
	cfgSize, manSize, blobs, err := metaSizes(img)
	if err != nil {
		return err
	}
	n := int64(rs.baseLayers + 2) // blobs: base layers, server layer, config
	s.add("\n### First deploy to an empty repository (cross-registry: base layers stream through the client)")
	s.table("", "wall time (median)", "each run", "requests src/dst", "bytes read from src", "bytes written to dst", "ours/crane", "target", "result")
	ot, ct := median(oursT), median(craneT)
	s.row("ours", fmtSecs(ot), list(oursT), fmt.Sprintf("%d / %d", sum(oursSrc, nil).requests, sum(oursDst, nil).requests),
		fmtBytes(sum(oursSrc, nil).received), fmtBytes(sum(oursDst, nil).sent), ratio(ot, ct), "≤ 1.1x", verdict(ot <= 1.1*ct))
	s.row("crane copy + append", fmtSecs(ct), list(craneT), fmt.Sprintf("%d / %d", sum(craneSrc, nil).requests, sum(craneDst, nil).requests),
		fmtBytes(sum(craneSrc, nil).received), fmtBytes(sum(craneDst, nil).sent), "1.00x", "", "")
	s.row("protocol minimum (below)", "", "", fmt.Sprintf("%d / %d", rs.baseLayers+2, 2*n+2), fmtBytes(rs.blobs)+" + manifest",
		fmtBytes(blobs+manSize), "", "", "")
	s.add("\nOf ours, Build (which gzips the server program into its layer; crane is handed that layer already gzip'd) took %s (median).", fmtSecs(median(buildT)))
	s.add("\nRequests, ours (last run): source: %s; destination: %s.", breakdown(oursSrc), breakdown(oursDst))
	s.add("\nRequests, crane pair (last run): source: %s; destination: %s.", breakdown(craneSrc), breakdown(craneDst))
	s.add("\nThe protocol's minimum for this push (distribution spec): read the base's manifest, config and %d layers once (%d requests); "+
		"write each of the %d blobs once as a monolithic upload, POST to open and PUT with the digest and body (%d requests; a registry may accept "+
		"a single POST with the body, which distribution and most do not), and PUT the manifest once (1), plus `GET /v2/` to learn the auth scheme (1): "+
		"%d requests to the destination. Bytes: every blob once, %s, plus the manifest (%d B). "+
		"Existence checks (HEAD per blob) are not in the minimum: a client that cannot know the repository is empty pays one per blob; "+
		"go-containerregistry also streams each upload as POST + PATCH + PUT, one more request per blob.",
		rs.baseLayers, rs.baseLayers+2, n, 2*n, 2*n+2, fmtBytes(blobs), manSize)

	// A new commit with the same server, one with a changed server, and a re-run, each into the last repository.
	s.add("\n### Later deploys into the same repository (ours)")
	s.table("case", "wall time (median)", "requests to dst", "blob + manifest writes", "bytes written to dst", "minimum bytes", "requests")
	for _, c := range []struct {
		name    string
		changed bool // a new server program each run
		rev     string
		min     int64
	}{
		{"new commit, same server", false, "rev%d", cfgSize + manSize},
		{"new commit, server changed", true, "rev-changed-%d", cfgSize + manSize + layer},
		{"re-run (same commit)", false, "rev0", 0},
	} {
		var ts []float64
		var dst map[string]traffic
		for i := range registryRuns {
			rev := c.rev
			if strings.Contains(rev, "%d") {
				rev = fmt.Sprintf(rev, i+1)
			}
			server := w.server
			if c.changed {
				server = filepath.Join(w.dir, fmt.Sprintf("server-changed-%d", i))
				if err := appendCopy(w.server, server, fmt.Sprintf("changed %d", i)); err != nil {
					return err
				}
			}
			rs.src.take()
			rs.dst.take()
			start := time.Now()
			if _, _, _, err := rs.deployOurs(ctx, server, last.Context().RepositoryStr(), rev); err != nil {
				return err
			}
			ts = append(ts, secs(time.Since(start)))
			dst = rs.dst.take()
		}
		wt := sum(dst, writes)
		s.row(c.name, fmtSecs(median(ts)), fmt.Sprint(sum(dst, nil).requests), fmt.Sprint(wt.requests), fmtBytes(sum(dst, nil).sent), fmtBytes(c.min), breakdown(dst))
	}
	s.add("\nMinimum bytes: a new commit changes only the config's revision label, so config (%d B) + manifest (%d B); a changed server adds its layer (%s); "+
		"a re-run writes nothing (the protocol's minimum is one manifest HEAD, after `GET /v2/`). The requests column is the last run's.",
		cfgSize, manSize, fmtBytes(layer))
	return nil
}

func startRegistries(ctx context.Context, w *world) (*registries, func(), error) {
	var stops []func()
	cleanup := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	fail := func(err error) (*registries, func(), error) { cleanup(); return nil, nil, err }
	rs := &registries{}
	for _, p := range []**countingProxy{&rs.src, &rs.dst} {
		dir, err := w.subdir(fmt.Sprintf("registry-%d", len(stops)))
		if err != nil {
			return fail(err)
		}
		reg, err := testenv.StartRegistry(ctx, dir)
		if err != nil {
			return fail(err)
		}
		stops = append(stops, func() { _ = reg.Stop() })
		if *p, err = startProxy(reg.Host()); err != nil {
			return fail(err)
		}
		stops = append(stops, (*p).Close)
	}
	var err error
	if rs.crane, err = buildCrane(ctx, w); err != nil {
		return fail(err)
	}
	rs.layerTar = filepath.Join(w.dir, "server-layer.tar.gz")
	if err := writeServerTar(w.server, rs.layerTar); err != nil {
		return fail(err)
	}
	fmt.Fprintln(os.Stderr, "bench: generating (or reading) and pushing the base image")
	img, err := baseImage(filepath.Join(w.cache, "base-layers"))
	if err != nil {
		return fail(err)
	}
	rs.base = rs.src.Host + "/mlflow/base:v1"
	ref, _ := name.ParseReference(rs.base, name.Insecure)
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return fail(fmt.Errorf("push the generated base to %s: %w", rs.base, err))
	}
	m, err := img.Manifest()
	if err != nil {
		return fail(err)
	}
	rs.baseLayers = len(m.Layers)
	rs.blobs = m.Config.Size
	for _, l := range m.Layers {
		rs.blobs += l.Size
	}
	return rs, cleanup, nil
}

// deployOurs is the action's image path: Base, Build, Push. It also returns how long Build took.
func (rs *registries) deployOurs(ctx context.Context, server, repo, rev string) (name.Tag, v1.Image, time.Duration, error) {
	base, err := image.Base(ctx, rs.base)
	if err != nil {
		return name.Tag{}, nil, 0, err
	}
	start := time.Now()
	img, err := image.Build(base, server, image.Options{Source: "https://github.com/octo-org/mlflow-server", Revision: rev})
	if err != nil {
		return name.Tag{}, nil, 0, err
	}
	build := time.Since(start)
	tag, err := name.NewTag(rs.dst.Host+"/"+repo+":"+rev, name.Insecure)
	if err != nil {
		return name.Tag{}, nil, 0, err
	}
	if _, _, err := image.Push(ctx, img, tag); err != nil {
		return name.Tag{}, nil, 0, err
	}
	return tag, img, build, nil
}

func (rs *registries) deployCrane(ctx context.Context, repo string) error {
	target := rs.dst.Host + "/" + repo + ":v1"
	for _, args := range [][]string{
		{"copy", "--insecure", rs.base, target},
		{"append", "--insecure", "-b", target, "-f", rs.layerTar, "-t", target},
	} {
		if out, err := exec.CommandContext(ctx, rs.crane, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("crane %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

func (rs *registries) craneVersion() string {
	out, _ := exec.Command("go", "list", "-m", "-f", "{{.Version}}", craneModule).Output()
	return strings.TrimSpace(string(out))
}

// buildCrane builds crane from the module cache at the version this module requires, in the
// go-containerregistry module's own directory (its go.mod has crane's CLI dependencies, which ours
// lacks), and keeps it in the cache.
func buildCrane(ctx context.Context, w *world) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", craneModule)
	cmd.Dir = moduleRoot()
	if out, err := cmd.Output(); err != nil {
		return "", fmt.Errorf("go mod download %s: %w\n%s", craneModule, err, out)
	}
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Version}} {{.Dir}}", craneModule).Output()
	if err != nil {
		return "", fmt.Errorf("go list -m %s: %w", craneModule, err)
	}
	version, dir, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	bin := filepath.Join(w.cache, "crane-"+version)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/crane")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build crane %s in %s: %w\n%s", version, dir, err, out)
	}
	return bin, nil
}

// writeServerTar writes the server program as a gzip'd tar at the image path, as Build's layer has it.
func writeServerTar(server, path string) error {
	in, err := os.Open(server)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(serverenv.BinaryPath, "/"), Mode: 0o755,
		Size: st.Size(), ModTime: time.Unix(0, 0), Format: tar.FormatPAX})
	if err == nil {
		_, err = io.Copy(tw, in)
	}
	for _, c := range []io.Closer{tw, zw, f} {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// appendCopy copies an executable and appends text: still a valid ELF program, with another digest.
func appendCopy(from, to, text string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, append(b, text...), 0o755)
}

func serverLayerSize(img v1.Image) (int64, error) {
	ls, err := img.Layers()
	if err != nil || len(ls) == 0 {
		return 0, fmt.Errorf("the pushed image's layers: %v", err)
	}
	return ls[len(ls)-1].Size()
}

// metaSizes returns the sizes of an image's config and manifest, and of all its blobs (layers and config).
func metaSizes(img v1.Image) (config, manifest, blobs int64, err error) {
	raw, err := img.RawManifest()
	if err != nil {
		return 0, 0, 0, err
	}
	m, err := img.Manifest()
	if err != nil {
		return 0, 0, 0, err
	}
	blobs = m.Config.Size
	for _, l := range m.Layers {
		blobs += l.Size
	}
	return m.Config.Size, int64(len(raw)), blobs, nil
}
