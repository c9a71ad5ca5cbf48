package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestConcurrentClients runs more clients at once than one MLflow worker has database connections (the
// server's defaults: a pool of 2 plus 2 overflow), each logging batches and reading them back, as a team
// of training jobs does. Every request must succeed: none may wait out SQLAlchemy's pool timeout.
func TestConcurrentClients(t *testing.T) {
	needWorld(t)
	in := startInstance(t, newDatabase(t), "MLFLOW_WORKERS=1")
	in.waitHealthy(t)
	defer stop(t, in)

	var exp struct {
		ID string `json:"experiment_id"`
	}
	in.api(t, "POST", "/api/2.0/mlflow/experiments/create", map[string]any{"name": "concurrent"}, &exp)
	const clients, rounds = 12, 5
	client := &http.Client{Timeout: 20 * time.Second}
	var wg sync.WaitGroup
	errs := make(chan string, clients*rounds*3)
	for c := range clients {
		wg.Go(func() {
			var run struct {
				Run struct {
					Info struct {
						RunID string `json:"run_id"`
					} `json:"info"`
				} `json:"run"`
			}
			in.api(t, "POST", "/api/2.0/mlflow/runs/create", map[string]any{"experiment_id": exp.ID}, &run)
			id := run.Run.Info.RunID
			for r := range rounds {
				body := fmt.Sprintf(`{"run_id":%q,"metrics":[{"key":"loss","value":%d,"timestamp":%d,"step":%d}],"params":[{"key":"p%d","value":"v"}]}`,
					id, c*100+r, time.Now().UnixMilli(), r, r)
				for _, call := range []struct{ method, path, body string }{
					{"POST", "/api/2.0/mlflow/runs/log-batch", body},
					{"GET", "/api/2.0/mlflow/runs/get?run_id=" + id, ""},
					{"POST", "/api/2.0/mlflow/runs/search", fmt.Sprintf(`{"experiment_ids":[%q],"max_results":5}`, exp.ID)},
				} {
					req, _ := http.NewRequest(call.method, in.URL()+call.path, strings.NewReader(call.body))
					req.Header.Set("Content-Type", "application/json")
					req.SetBasicAuth(in.user, in.pass)
					start := time.Now()
					resp, err := client.Do(req)
					if err != nil {
						errs <- fmt.Sprintf("client %d: %s %s: %v after %s", c, call.method, call.path, err, time.Since(start))
						continue
					}
					b := readAll(resp)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						errs <- fmt.Sprintf("client %d: %s %s: %d after %s: %.200s", c, call.method, call.path, resp.StatusCode, time.Since(start), b)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	n := 0
	for e := range errs {
		if n++; n <= 10 {
			t.Error(e)
		}
	}
	if n > 0 {
		t.Errorf("%d of %d requests failed", n, clients*rounds*3)
	}
}
