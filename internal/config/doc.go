// Package config turns the action's inputs and the GitHub environment into a validated Config. It makes
// no network call: every input is checked here, and every problem is reported at once as an *InputError
// that names the input, the bad value (unless it may be a secret) and what would be valid.
//
// Parse reads, through go-githubactions (INPUT_<NAME>, trimmed):
//
//	project_id region service repository image mlflow_version base_image
//	backend_store_secret artifacts_destination artifacts_destination_secret
//	auth username_secret password_secret allow_unauthenticated
//	default_permission flask_secret_key_secret kek_passphrase_secret
//	secrets secret_versions env_vars cloudsql_instances service_account
//	memory cpu workers min_instances max_instances concurrency timeout wait_timeout labels
//	no_traffic tag remove_tag dry_run
//
// and from the environment: GOOGLE_CLOUD_PROJECT, GCLOUD_PROJECT and CLOUDSDK_CORE_PROJECT (the project
// when project_id is unset, as google-github-actions/auth exports it), GITHUB_SHA, GITHUB_SERVER_URL and
// GITHUB_REPOSITORY.
//
// Each step of Parse (parse.go) reads one group of inputs and checks it, using what earlier steps read;
// auth modes (auth.go, mlflowauth.go), secret references, secret mounts, the secrets that inputs name as
// MLflow's variables (serversecrets.go), resource sizes, workers, env names, labels and Google's naming
// rules (names.go) have their own files, each rule beside the URL of the reference it comes from; so do
// previews and their tags (traffic.go) and dry runs (plan.go).
package config
