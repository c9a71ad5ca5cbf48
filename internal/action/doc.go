// Package action runs the deploy from end to end, in the order a reader expects: validate the inputs,
// load credentials, check the secrets, build and push the image, create or update the Cloud Run service,
// then write the step's outputs and summary. Each step lives in its own package; this one only joins them.
package action
