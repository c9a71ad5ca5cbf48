package config

import (
	"strings"
	"testing"
)

func TestCheckGCSURI(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		says string // "" when accepted
	}{
		{"gs://my-bucket", ""},
		{"gs://my-bucket/mlflow/artifacts", ""},
		{"gs://a.b_c-d/x", ""},
		{"s3://bucket", "gs://BUCKET"},
		{"my-bucket", "gs://BUCKET"},
		{"gs://", "bucket names"},
		{"gs://ab", "bucket names"},
		{"gs://My-Bucket", "bucket names"},
		{"gs://-bucket/x", "bucket names"},
	} {
		err := checkGCSURI(tc.in)
		switch {
		case tc.says == "" && err != nil:
			t.Errorf("checkGCSURI(%q) = %v, want nil", tc.in, err)
		case tc.says != "" && (err == nil || !strings.Contains(err.Error(), tc.says)):
			t.Errorf("checkGCSURI(%q) = %v, want an error saying %q", tc.in, err, tc.says)
		}
	}
}
