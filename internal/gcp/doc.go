// Package gcp is how the action reaches Google: Application Default Credentials from the file that
// google-github-actions/auth writes, with errors that say how to fix the workflow, and client options
// that point an API at its default endpoint or at a local emulator.
package gcp
