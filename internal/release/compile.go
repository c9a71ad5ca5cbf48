package release

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Compile builds the action (the module's main package) and the server program (./server) in moduleRoot as
// static linux/amd64 binaries into outDir, with -trimpath so that the machine's paths stay out of them.
func Compile(ctx context.Context, moduleRoot, outDir string) (actionBin, serverBin string, err error) {
	actionBin = filepath.Join(outDir, "deploy-mlflow")
	serverBin = filepath.Join(outDir, "deploy-mlflow-server")
	for pkg, out := range map[string]string{".": actionBin, "./server": serverBin} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
		cmd.Dir = moduleRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s in %s: %w\n%s", pkg, moduleRoot, err, b)
		}
	}
	return actionBin, serverBin, nil
}
