// Package config turns the action's inputs (INPUT_* variables) and the GitHub environment into a
// validated Config. It makes no network call: every input is checked here, and every problem is
// reported at once as an *InputError that names the input, the bad value and what would be valid.
package config
