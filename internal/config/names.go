package config

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Google's rules for the names the action sends, each with where it is documented.
var (
	// Project IDs: 6 to 30 lowercase letters, digits and hyphens, starting with a letter, not ending
	// with a hyphen; a domain-scoped project is DOMAIN:ID
	// (https://cloud.google.com/resource-manager/docs/creating-managing-projects; not re-checked
	// against the current page).
	projectRE = regexp.MustCompile(`^([a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	// Cloud Run regions such as us-central1 (https://cloud.google.com/run/docs/locations).
	regionRE = regexp.MustCompile(`^[a-z]+-[a-z]+[0-9]+$`)
	// Service IDs "must begin with letter, and cannot end with hyphen; must contain fewer than 50
	// characters" (CreateServiceRequest.service_id,
	// https://cloud.google.com/python/docs/reference/run/latest/google.cloud.run_v2.types.CreateServiceRequest); letters
	// are lowercase, digits and hyphens, as in a DNS label (the service's URL is one).
	serviceRE = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$`)
	// Artifact Registry repository IDs: lowercase letters, digits and hyphens, starting with a letter,
	// not ending with a hyphen, at most 63 characters
	// (https://cloud.google.com/artifact-registry/docs/repositories/create-repos; not re-checked
	// against the current page).
	repositoryRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)
	// Cloud SQL instance IDs are "lowercase letters, numbers, and hyphens, and it must start with a
	// letter", at most 98 characters
	// (https://docs.cloud.google.com/python/docs/reference/google-cloud-sql/latest/google.cloud.sqladmin_v1.types.SqlInstancesReleaseSsrsLeaseRequest).
	cloudSQLInstanceRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,97}$`)
	// Artifact Registry's Docker hosts, LOCATION-docker.pkg.dev
	// (https://cloud.google.com/artifact-registry/docs/docker/names).
	artifactRegistryHostRE = regexp.MustCompile(`^[a-z0-9-]+-docker\.pkg\.dev$`)
	// A service account's email: RevisionTemplate.service_account is "Email address of the IAM service
	// account" (https://cloud.google.com/python/docs/reference/run/0.3.0/google.cloud.run_v2.types.RevisionTemplate),
	// and every service account's address is in a gserviceaccount.com domain (user-managed
	// NAME@PROJECT.iam.gserviceaccount.com, the Compute default NUMBER-compute@developer.gserviceaccount.com,
	// App Engine's PROJECT@appspot.gserviceaccount.com).
	serviceAccountRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*@[a-z0-9][a-z0-9.-]*\.gserviceaccount\.com$`)
)

// checkArtifactRegistryImage checks an image repository on an Artifact Registry host against the
// naming rules: LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE, where a domain-scoped project
// example.com:proj is written example.com/proj. Repositories elsewhere are left to their registry.
func checkArtifactRegistryImage(repo name.Repository) error {
	if !artifactRegistryHostRE.MatchString(repo.RegistryStr()) {
		return nil
	}
	parts := strings.Split(repo.RepositoryStr(), "/")
	if len(parts) > 0 && strings.Contains(parts[0], ".") && len(parts) > 1 {
		parts = append([]string{parts[0] + ":" + parts[1]}, parts[2:]...)
	}
	const want = "an Artifact Registry image is LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE"
	switch {
	case len(parts) < 3:
		return errors.New(want + ", such as us-central1-docker.pkg.dev/my-project/my-repo/mlflow")
	case !projectRE.MatchString(parts[0]):
		return fmt.Errorf("%s, and %q is not a project ID (6 to 30 lowercase letters, digits and hyphens, starting with a letter)", want, parts[0])
	case !repositoryRE.MatchString(parts[1]):
		return fmt.Errorf("%s, and %q is not a repository ID (up to 63 lowercase letters, digits and hyphens, starting with a letter)", want, parts[1])
	}
	return nil
}

// checkCloudSQL checks a Cloud SQL connection name, PROJECT:REGION:INSTANCE, where PROJECT may be
// domain-scoped (example.com:proj).
func checkCloudSQL(conn string) error {
	const want = "name each Cloud SQL instance by its connection name, PROJECT:REGION:INSTANCE (gcloud sql instances describe INSTANCE --format='value(connectionName)')"
	i := strings.LastIndexByte(conn, ':')
	if i < 0 {
		return errors.New(want)
	}
	rest, instance := conn[:i], conn[i+1:]
	j := strings.LastIndexByte(rest, ':')
	if j < 0 {
		return errors.New(want)
	}
	project, region := rest[:j], rest[j+1:]
	switch {
	case !projectRE.MatchString(project):
		return errors.New(want + "; the project part is not a project ID")
	case !regionRE.MatchString(region):
		return errors.New(want + "; the region part is not a region such as us-central1")
	case !cloudSQLInstanceRE.MatchString(instance):
		return errors.New(want + "; an instance ID is up to 98 lowercase letters, digits and hyphens, starting with a letter")
	}
	return nil
}
