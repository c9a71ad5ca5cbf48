package gcp

import (
	"context"
	"fmt"
	"net"
	"strings"

	"golang.org/x/oauth2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Endpoint variables point a Google API at another address (host:port), such as a local emulator.
const (
	RunEndpointEnv           = "DEPLOY_MLFLOW_RUN_ENDPOINT"
	SecretManagerEndpointEnv = "DEPLOY_MLFLOW_SECRETMANAGER_ENDPOINT"
)

// ClientOptions are the options for a Google API client: the default endpoint over TLS, or endpoint.
// A loopback endpoint is reached over plaintext gRPC (an emulator on this machine); the bearer token is
// still sent, so the emulator can check it. Any other endpoint keeps TLS.
func ClientOptions(endpoint string, ts oauth2.TokenSource) ([]option.ClientOption, error) {
	if endpoint == "" {
		return []option.ClientOption{option.WithTokenSource(ts)}, nil
	}
	host, _, err := net.SplitHostPort(endpoint)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q is not host:port: %w", endpoint, err)
	}
	if !IsLoopback(host) {
		return []option.ClientOption{option.WithEndpoint(endpoint), option.WithTokenSource(ts)}, nil
	}
	conn, err := grpc.NewClient(endpoint,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(bearer{ts}))
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", endpoint, err)
	}
	return []option.ClientOption{option.WithGRPCConn(conn)}, nil
}

// IsLoopback tells whether host names this machine: localhost or a loopback address.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// bearer sends an OAuth token with every call, also over plaintext (only used on loopback).
type bearer struct{ ts oauth2.TokenSource }

func (b bearer) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	tok, err := b.ts.Token()
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok.AccessToken}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }
