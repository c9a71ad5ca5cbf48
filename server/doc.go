// The server program is the entrypoint of the deployed image. It fronts MLflow's tracking server on Cloud
// Run: it brings the database schema up to date once (under a PostgreSQL advisory lock, so that instances
// starting together do not race), starts `mlflow server` as a child on a loopback port with artifacts
// proxied to GCS, and serves $PORT over HTTP/1.1 and h2c. In front of MLflow it answers the health path
// itself, demands HTTP basic auth (or leaves access to Cloud Run IAM), refuses cross-origin writes, and
// streams requests and responses through without buffering them. It logs one JSON line per request and
// event in Cloud Logging's structured format, relays MLflow's output the same way, and keeps credentials
// out of every line. See README.md for what it reads from the environment.
package main
