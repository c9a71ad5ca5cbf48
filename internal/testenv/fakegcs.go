package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

// FakeGCS is fake-gcs-server running in this process on 127.0.0.1 over plain HTTP. Point clients at it with
// STORAGE_EMULATOR_HOST=URL() (MLflow's GCS client also needs GOOGLE_CLOUD_PROJECT set).
type FakeGCS struct {
	srv  *fakestorage.Server
	http *http.Server
	url  string
}

// StartFakeGCS starts the fake with the given buckets, objects kept in memory.
func StartFakeGCS(ctx context.Context, buckets ...string) (*FakeGCS, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fake GCS: %w", err)
	}
	url := "http://" + ln.Addr().String()
	// The fake serves on our own listener, so the URL it writes into resumable-upload Location headers
	// (ExternalURL) is known before it starts and names the port clients actually reach.
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme:      "http",
		NoListener:  true,
		ExternalURL: url,
		PublicHost:  ln.Addr().String(),
	})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("fake GCS: %w", err)
	}
	f := &FakeGCS{srv: srv, http: &http.Server{Handler: srv.HTTPHandler()}, url: url}
	go func() { _ = f.http.Serve(ln) }()
	for _, b := range buckets {
		f.CreateBucket(b)
	}
	return f, nil
}

// URL returns the base URL, the value for STORAGE_EMULATOR_HOST.
func (f *FakeGCS) URL() string { return f.url }

// Server returns the fake itself, for direct access to buckets and objects.
func (f *FakeGCS) Server() *fakestorage.Server { return f.srv }

// CreateBucket creates a bucket.
func (f *FakeGCS) CreateBucket(name string) {
	f.srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: name})
}

// ObjectNames lists the names of the objects in bucket that start with prefix.
func (f *FakeGCS) ObjectNames(bucket, prefix string) ([]string, error) {
	var names []string
	opts := fakestorage.ListOptions{Prefix: prefix}
	for {
		page, err := f.srv.ListObjectsWithOptionsPaginated(bucket, opts)
		if err != nil {
			return nil, fmt.Errorf("fake GCS: list gs://%s/%s: %w", bucket, prefix, err)
		}
		for _, o := range page.Objects {
			names = append(names, o.Name)
		}
		if page.NextPageToken == "" {
			return names, nil
		}
		opts.PageToken = page.NextPageToken
	}
}

// Open returns a reader of the object's content.
func (f *FakeGCS) Open(bucket, name string) (io.ReadCloser, error) {
	obj, err := f.srv.GetObjectStreaming(bucket, name)
	if err != nil {
		return nil, fmt.Errorf("fake GCS: gs://%s/%s: %w", bucket, name, err)
	}
	if obj.Content == nil {
		return nil, errors.New("fake GCS: object without content")
	}
	return obj.Content, nil
}

// Stop stops serving.
func (f *FakeGCS) Stop() {
	_ = f.http.Close()
	f.srv.Stop()
}
