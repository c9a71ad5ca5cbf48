package main

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// storeGate bounds how many requests that use MLflow's tracking store reach MLflow at once.
//
// Each MLflow worker holds a SQLAlchemy pool of pool_size + max_overflow connections, and some of
// MLflow's calls take a second connection while they hold one: log_batch opens a session and then logs
// params through another. When as many such requests as a worker has connections run at once, each holds
// one and waits for another until SQLAlchemy's pool timeout (30 s) fails them all. Cloud Run sends an
// instance up to `concurrency` (80 by default) requests at once, so a few training jobs logging together
// would stall. With at most connections − 1 such requests in the whole instance, however uvicorn spreads
// them over its workers, one of them can always take its second connection, finish and free both. The
// rest wait here, in a goroutine each, for a slot.
type storeGate chan struct{}

// newStoreGate returns the gate for MLflow's environment env (as mlflowEnv builds it), nil when MLflow's
// pool is not bounded by the size settings (SQLite, NullPool, or sizes that are not whole numbers).
func newStoreGate(env []string) storeGate {
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	if c := vars["MLFLOW_SQLALCHEMYSTORE_POOLCLASS"]; c != "" && c != "QueuePool" {
		return nil
	}
	size, err1 := strconv.Atoi(vars[serverenv.DBPoolSize])
	overflow, err2 := strconv.Atoi(vars[serverenv.DBMaxOverflow])
	if err1 != nil || err2 != nil || size < 1 || overflow < 0 {
		return nil
	}
	return make(storeGate, max(size+overflow-1, 1))
}

// enter waits for a slot; false when ctx ends first (the client went away).
func (g storeGate) enter(ctx context.Context) bool {
	select {
	case g <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (g storeGate) leave() { <-g }

// usesStore reports whether r reaches MLflow's tracking store: its REST and ajax APIs and GraphQL, but not
// artifact transfers (which stream to the bucket, can take minutes, and use no connection) nor the UI's
// static files.
func usesStore(r *http.Request) bool {
	p := r.URL.Path
	if strings.Contains(p, "/mlflow-artifacts/") {
		return false
	}
	return strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/ajax-api/") || strings.HasPrefix(p, "/graphql")
}
