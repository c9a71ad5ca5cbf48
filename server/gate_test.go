package main

import (
	"context"
	"net/http/httptest"
	"testing"
)

func TestNewStoreGate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  []string
		want int // cap; -1 for no gate
	}{
		{"server defaults", []string{"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=2", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW=2"}, 3},
		{"larger pool", []string{"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=5", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW=10"}, 14},
		{"one connection", []string{"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=1", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW=0"}, 1},
		{"QueuePool named", []string{"MLFLOW_SQLALCHEMYSTORE_POOLCLASS=QueuePool", "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=3", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW=1"}, 3},
		{"NullPool", []string{"MLFLOW_SQLALCHEMYSTORE_POOLCLASS=NullPool", "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=2", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW=2"}, -1},
		{"SQLite: no sizes", []string{"MLFLOW_WORKERS=2"}, -1},
		{"not a number", []string{"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=two", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW=2"}, -1},
	} {
		g := newStoreGate(tc.env)
		if got := cap(g); (g == nil && tc.want != -1) || (g != nil && got != tc.want) {
			t.Errorf("%s: gate of %d (nil %v), want %d", tc.name, got, g == nil, tc.want)
		}
	}
}

func TestUsesStore(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]bool{
		"/api/2.0/mlflow/runs/log-batch":          true,
		"/ajax-api/2.0/mlflow/experiments/search": true,
		"/graphql":                      true,
		"/api/3.0/mlflow/traces/search": true,
		"/api/2.0/mlflow-artifacts/artifacts/1/abc/model.pkl": false,
		"/ajax-api/2.0/mlflow-artifacts/artifacts/1/x":        false,
		"/static-files/lib/app.js":                            false,
		"/":                                                   false,
	} {
		if got := usesStore(httptest.NewRequest("GET", path, nil)); got != want {
			t.Errorf("usesStore(%s) = %v, want %v", path, got, want)
		}
	}
}

// TestStoreGateWaits: a full gate holds the next request until a slot frees, and lets it go when its
// client leaves.
func TestStoreGateWaits(t *testing.T) {
	t.Parallel()
	g := make(storeGate, 1)
	if !g.enter(context.Background()) {
		t.Fatal("an empty gate refused")
	}
	ctx, cancel := context.WithCancel(context.Background())
	entered := make(chan bool)
	go func() { entered <- g.enter(ctx) }()
	select {
	case <-entered:
		t.Fatal("a full gate let a second request in")
	default:
	}
	cancel()
	if <-entered {
		t.Error("a request whose client left entered a full gate")
	}
	g.leave()
	if !g.enter(context.Background()) {
		t.Error("a freed slot was not taken")
	}
}
