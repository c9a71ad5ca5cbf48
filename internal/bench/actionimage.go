package main

import (
	"context"
	"fmt"
	"os/exec"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/deploy-mlflow/deploy-mlflow/internal/testenv"
)

// releaseSource labels the image; given, as a fresh clone may have no origin remote to take it from.
const releaseSource = "https://github.com/deploy-mlflow/deploy-mlflow"

// actionImage builds and pushes the action's image exactly as `make release-image` does, to a local
// registry, and sums what a workflow pulls: the manifest's layers and config.
func actionImage(ctx context.Context, w *world, r *report) error {
	dir, err := w.subdir("release-registry")
	if err != nil {
		return err
	}
	reg, err := testenv.StartRegistry(ctx, dir)
	if err != nil {
		return err
	}
	defer reg.Stop()
	ref := reg.Host() + "/deploy-mlflow:bench"
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "release-image", "RELEASE_REF="+ref, "RELEASE_SOURCE="+releaseSource)
	cmd.Dir = moduleRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("make release-image: %w\n%s", err, out)
	}
	parsed, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	img, err := remote.Image(parsed, remote.WithContext(ctx))
	if err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	total := m.Config.Size
	for _, l := range m.Layers {
		total += l.Size
	}
	s := r.section("5. The action's image", "make release-image RELEASE_REF=127.0.0.1:PORT/deploy-mlflow:bench RELEASE_SOURCE="+releaseSource, 1)
	s.add("\nBuilt and pushed by `make release-image` (internal/release) to a local docker-registry, then read back: what a workflow pulls is the " +
		"manifest's layers and config (the size is deterministic for a commit: one run).")
	s.table("figure", "bytes", "target", "result")
	s.row(fmt.Sprintf("compressed size: %d layer(s) + config", len(m.Layers)), fmtBytes(total), "< 20 MB", verdict(total < 20e6))
	s.row("manifest (also fetched)", fmtBytes(int64(len(raw))), "", "")
	return nil
}
