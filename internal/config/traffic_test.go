package config

import (
	"errors"
	"strings"
	"testing"
)

func TestParseTraffic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		inputs    map[string]string
		noTraffic bool
		tag, rm   string
		badInput  string // the input an error names; empty: valid
	}{
		{name: "defaults"},
		{name: "preview", inputs: map[string]string{"INPUT_NO_TRAFFIC": "true", "INPUT_TAG": "pr-123"}, noTraffic: true, tag: "pr-123"},
		{name: "tag on a serving revision", inputs: map[string]string{"INPUT_TAG": "stable"}, tag: "stable"},
		{name: "remove", inputs: map[string]string{"INPUT_REMOVE_TAG": "pr-123"}, rm: "pr-123"},
		{name: "no traffic without a tag", inputs: map[string]string{"INPUT_NO_TRAFFIC": "true"}, badInput: "no_traffic"},
		{name: "no_traffic not a boolean", inputs: map[string]string{"INPUT_NO_TRAFFIC": "yes", "INPUT_TAG": "a"}, badInput: "no_traffic"},
		{name: "upper case", inputs: map[string]string{"INPUT_TAG": "PR-1"}, badInput: "tag"},
		{name: "starts with a digit", inputs: map[string]string{"INPUT_TAG": "123"}, badInput: "tag"},
		{name: "ends with a hyphen", inputs: map[string]string{"INPUT_TAG": "pr-"}, badInput: "tag"},
		{name: "underscore", inputs: map[string]string{"INPUT_TAG": "pr_1"}, badInput: "tag"},
		// The service is mlflow (6 characters): 40 are allowed, 41 are not.
		{name: "longest", inputs: map[string]string{"INPUT_TAG": "a" + strings.Repeat("b", 39)}, tag: "a" + strings.Repeat("b", 39)},
		{name: "too long", inputs: map[string]string{"INPUT_TAG": "a" + strings.Repeat("b", 40)}, badInput: "tag"},
		{name: "bad remove_tag", inputs: map[string]string{"INPUT_REMOVE_TAG": "PR"}, badInput: "remove_tag"},
		{name: "remove with tag", inputs: map[string]string{"INPUT_REMOVE_TAG": "pr-1", "INPUT_TAG": "pr-2"}, badInput: "remove_tag"},
		{name: "remove with no_traffic", inputs: map[string]string{"INPUT_REMOVE_TAG": "pr-1", "INPUT_NO_TRAFFIC": "true", "INPUT_TAG": "pr-1"}, badInput: "remove_tag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := validEnv()
			for k, v := range tt.inputs {
				env[k] = v
			}
			c, err := parse(env)
			if tt.badInput != "" {
				var ie *InputError
				if !errors.As(err, &ie) || ie.Input != tt.badInput {
					t.Fatalf("want an error naming input %s, got %v", tt.badInput, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.NoTraffic != tt.noTraffic || c.Tag != tt.tag || c.RemoveTag != tt.rm {
				t.Errorf("no_traffic %v, tag %q, remove_tag %q; want %v, %q, %q", c.NoTraffic, c.Tag, c.RemoveTag, tt.noTraffic, tt.tag, tt.rm)
			}
		})
	}
}

func TestParseDryRun(t *testing.T) {
	t.Parallel()
	env := validEnv()
	env["INPUT_DRY_RUN"] = "true"
	if c, err := parse(env); err != nil || !c.DryRun {
		t.Errorf("dry_run: true gave %+v, %v", c, err)
	}
	env["INPUT_REMOVE_TAG"] = "pr-1"
	var ie *InputError
	if _, err := parse(env); !errors.As(err, &ie) || ie.Input != "dry_run" {
		t.Errorf("dry_run with remove_tag: want an error naming dry_run, got %v", err)
	}
}
