package gcptest

// Runtime decides the fate of each new Cloud Run revision.
type Runtime interface{}

// ServiceRef names a Cloud Run service.
type ServiceRef struct{}
