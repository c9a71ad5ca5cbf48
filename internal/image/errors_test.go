package image

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

func TestArtifactRegistry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		repo string
		want arRepository
		ok   bool
	}{
		{"us-central1-docker.pkg.dev/acme-ml/models/mlflow", arRepository{"us-central1", "acme-ml", "models"}, true},
		{"europe-docker.pkg.dev/acme-ml/models/team/mlflow", arRepository{"europe", "acme-ml", "models"}, true},
		{"us-central1-docker.pkg.dev/example.com/acme-ml/models/mlflow", arRepository{"us-central1", "example.com:acme-ml", "models"}, true},
		{"us-central1-docker.pkg.dev/acme-ml/models", arRepository{}, false},
		{"gcr.io/acme-ml/mlflow", arRepository{}, false},
		{"ghcr.io/acme/models/mlflow", arRepository{}, false},
		{"127.0.0.1:5000/acme-ml/models/mlflow", arRepository{}, false},
	} {
		repo, err := name.NewRepository(tc.repo)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := artifactRegistry(repo)
		if got != tc.want || ok != tc.ok {
			t.Errorf("artifactRegistry(%s) = %+v, %v; want %+v, %v", tc.repo, got, ok, tc.want, tc.ok)
		}
	}
}
