// Package cloudrun turns a config into the Cloud Run service the action wants (Desired, a pure
// function), compares it with the live one field by field (Changes, Apply; also pure), and makes it so
// through the Cloud Run Admin API v2 (Deployer: create or read-change-write with the etag, wait for the
// revision with a deadline, report a failed revision's reason, set who may invoke it).
package cloudrun
