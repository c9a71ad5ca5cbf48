// Package release builds the action's own image without Docker: an empty base and one layer holding the
// static action binary (the entrypoint), the server program where the action looks for it, and the CA roots
// the action needs for TLS. Inputs are files and fixed metadata only, with fixed mtimes and order, so the same
// commit gives the same digest. The command in ./cmd compiles, builds and pushes it (make release-image).
package release
