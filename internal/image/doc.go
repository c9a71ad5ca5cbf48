// Package image builds the container image that Cloud Run runs and pushes it to Artifact Registry, without
// a Docker daemon. Build appends one layer holding the server program to a base image that already holds
// MLflow, and points the entrypoint at it; Push writes the result under a tag, uploading only the blobs the
// registry does not have and nothing at all when the tag already names the same image. The two steps are
// joined by a v1.Image, a lazy value: base layers are streamed from the base registry to the target only
// when the target lacks them. Builds are reproducible, so the same inputs give the same digest.
package image
