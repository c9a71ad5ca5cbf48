package gcp

import (
	"context"
	"fmt"
	"net"

	"golang.org/x/oauth2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/deploy-mlflow/deploy-mlflow/internal/loopback"
)

// Endpoint variables point a Google API at another address (host:port), such as a local emulator.
const (
	RunEndpointEnv           = "DEPLOY_MLFLOW_RUN_ENDPOINT"
	SecretManagerEndpointEnv = "DEPLOY_MLFLOW_SECRETMANAGER_ENDPOINT"
)

// ClientOptions are the options for a Google API client: the default endpoint over TLS, or endpoint.
// An endpoint on a loopback address is reached over plaintext gRPC (an emulator on this machine); the
// bearer token is still sent, so the emulator can check it. Any other endpoint keeps TLS. Every call
// on the connection is retried as Retry says (see RetryableGRPC).
func ClientOptions(endpoint string, ts oauth2.TokenSource) ([]option.ClientOption, error) {
	retry := grpc.WithChainUnaryInterceptor(retryUnary(Retry))
	if endpoint == "" {
		return []option.ClientOption{option.WithTokenSource(ts), option.WithGRPCDialOption(retry)}, nil
	}
	plain, err := plaintext(endpoint)
	if err != nil {
		return nil, err
	}
	if !plain {
		return []option.ClientOption{option.WithEndpoint(endpoint), option.WithTokenSource(ts), option.WithGRPCDialOption(retry)}, nil
	}
	conn, err := grpc.NewClient(endpoint,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(bearer{ts}), retry)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", endpoint, err)
	}
	return []option.ClientOption{option.WithGRPCConn(conn)}, nil
}

// plaintext tells whether endpoint (host:port) is reached without TLS: only a loopback address is.
func plaintext(endpoint string) (bool, error) {
	if _, _, err := net.SplitHostPort(endpoint); err != nil {
		return false, fmt.Errorf("endpoint %q is not host:port: %w", endpoint, err)
	}
	return loopback.HostPort(endpoint), nil
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
