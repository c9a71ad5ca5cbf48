// Command cmd builds the action's image from this checkout and pushes it (make release-image):
//
//	go run ./internal/release/cmd -ref ghcr.io/OWNER/deploy-mlflow:v1.2.3 -source URL -revision SHA -created TIME
//
// It reads REGISTRY_USER and REGISTRY_TOKEN (in the release workflow: github.actor and GITHUB_TOKEN); without
// a token it pushes anonymously. It prints the pushed image by digest, REPOSITORY@sha256:..., and writes it to
// -digest-file when given.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/deploy-mlflow/deploy-mlflow/internal/release"
)

func main() {
	ref := flag.String("ref", "", "where to push, REGISTRY/REPOSITORY:TAG (required)")
	source := flag.String("source", "", "repository URL, the org.opencontainers.image.source label (required)")
	revision := flag.String("revision", "", "commit SHA, the org.opencontainers.image.revision label (required)")
	created := flag.String("created", "1970-01-01T00:00:00Z", "image creation time, RFC 3339 (the commit's time keeps the digest reproducible)")
	caCerts := flag.String("ca-certs", "/etc/ssl/certs/ca-certificates.crt", "PEM bundle of CA roots to put in the image")
	module := flag.String("module", ".", "the module's root directory")
	digestFile := flag.String("digest-file", "", "also write the digest reference here")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *ref, *source, *revision, *created, *caCerts, *module, *digestFile); err != nil {
		fmt.Fprintln(os.Stderr, "release-image:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, ref, source, revision, created, caCerts, module, digestFile string) error {
	if ref == "" {
		return fmt.Errorf("-ref is required (e.g. ghcr.io/OWNER/deploy-mlflow:v1.2.3)")
	}
	when, err := time.Parse(time.RFC3339, created)
	if err != nil {
		return fmt.Errorf("-created %q: %w; give RFC 3339, e.g. git log -1 --format=%%cI", created, err)
	}
	dir, err := os.MkdirTemp("", "deploy-mlflow-release-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	actionBin, serverBin, err := release.Compile(ctx, module, dir)
	if err != nil {
		return err
	}
	img, err := release.Image(release.Inputs{Action: actionBin, Server: serverBin, CACerts: caCerts, Source: source, Revision: revision, Created: when})
	if err != nil {
		return err
	}
	pushed, err := release.Push(ctx, img, ref, release.Auth(os.Getenv("REGISTRY_USER"), os.Getenv("REGISTRY_TOKEN")))
	if err != nil {
		return err
	}
	if digestFile != "" {
		if err := os.WriteFile(digestFile, []byte(pushed+"\n"), 0o644); err != nil {
			return fmt.Errorf("write -digest-file: %w", err)
		}
	}
	fmt.Println(pushed)
	return nil
}
