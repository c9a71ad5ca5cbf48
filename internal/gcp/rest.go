package gcp

import (
	"fmt"
	"net/http"

	"golang.org/x/oauth2"
	"google.golang.org/api/option"
)

// ResourceManagerEndpointEnv points the Cloud Resource Manager API (REST) at another address (host:port).
const ResourceManagerEndpointEnv = "DEPLOY_MLFLOW_RESOURCEMANAGER_ENDPOINT"

// RESTClientOptions are the options for a Google REST API client: the default endpoint, or endpoint
// (host:port), over plain HTTP on a loopback address (an emulator on this machine) and HTTPS elsewhere.
// The bearer token is sent either way, by an HTTP client that retries as RetryTransport does.
func RESTClientOptions(endpoint string, ts oauth2.TokenSource) ([]option.ClientOption, error) {
	client := option.WithHTTPClient(&http.Client{Transport: RetryTransport(&oauth2.Transport{Source: ts}, Retry)})
	if endpoint == "" {
		return []option.ClientOption{client}, nil
	}
	plain, err := plaintext(endpoint)
	if err != nil {
		return nil, err
	}
	scheme := "https"
	if plain {
		scheme = "http"
	}
	return []option.ClientOption{option.WithEndpoint(fmt.Sprintf("%s://%s/", scheme, endpoint)), client}, nil
}
