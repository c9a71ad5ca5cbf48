package config

import (
	"strings"
	"testing"
)

func TestSizePairs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cpu, memory string
		ok          bool
	}{
		{"1", "512Mi", true}, {"1", "4Gi", true}, {"1", "4097Mi", false}, {"2", "8Gi", true}, {"2", "9Gi", false},
		{"4", "16Gi", true}, {"4", "17Gi", false}, {"6", "24Gi", true}, {"6", "25Gi", false}, {"8", "32Gi", true},
		{"4", "1Gi", false}, {"4", "2Gi", true}, {"6", "2Gi", false}, {"8", "4Gi", true},
	} {
		if err := sizeProblem(tc.cpu, tc.memory); (err == nil) != tc.ok {
			t.Errorf("sizeProblem(%s, %s) = %v, want ok=%v", tc.cpu, tc.memory, err, tc.ok)
		}
	}
}

func TestQuantities(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in string
		mi int
		ok bool
	}{{"2Gi", 2048, true}, {"512Mi", 512, true}, {"2G", 0, false}, {"Gi", 0, false}, {"0Mi", 0, false}} {
		if mi, ok := MemoryMi(tc.in); mi != tc.mi || ok != tc.ok {
			t.Errorf("MemoryMi(%q) = %d, %v; want %d, %v", tc.in, mi, ok, tc.mi, tc.ok)
		}
	}
	for _, tc := range []struct {
		in string
		m  int
		ok bool
	}{{"1", 1000, true}, {"2000m", 2000, true}, {"3", 0, false}, {"0.5", 0, false}} {
		if m, ok := CPUMillis(tc.in); m != tc.m || ok != tc.ok {
			t.Errorf("CPUMillis(%q) = %d, %v; want %d, %v", tc.in, m, ok, tc.m, tc.ok)
		}
	}
}

// TestParseMemoryBounds checks memory's range at both ends. cpu 8 takes any memory Cloud Run offers, so
// a refusal above 32Gi can only come from memory's own bound, not from the cpu pairing.
func TestParseMemoryBounds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		memory, cpu string
		ok          bool
	}{
		{"512Mi", "1", true},
		{"511Mi", "1", false},
		{"32Gi", "8", true},
		{"32768Mi", "8", true},
		{"32769Mi", "8", false},
		{"33Gi", "8", false},
		{"64Gi", "8", false},
	} {
		t.Run(tc.memory, func(t *testing.T) {
			t.Parallel()
			env := validEnv()
			env["INPUT_MEMORY"], env["INPUT_CPU"] = tc.memory, tc.cpu
			c, err := parse(env)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if c.Memory != tc.memory {
					t.Errorf("memory = %q, want %q", c.Memory, tc.memory)
				}
				return
			}
			ie := inputError(err, "memory")
			if ie == nil {
				t.Fatalf("no error names input memory; got: %v", err)
			}
			if msg := ie.Error(); !strings.Contains(msg, "input memory") || !strings.Contains(msg, tc.memory) || !strings.Contains(msg, "512Mi to 32Gi") {
				t.Errorf("error %q should name input memory, the value and the range 512Mi to 32Gi", msg)
			}
		})
	}
}
