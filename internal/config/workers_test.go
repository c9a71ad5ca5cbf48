package config

import "testing"

func TestDefaultWorkers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		cpu, memory string
		want        int32
	}{
		{"1", "2Gi", 2},       // Cloud Run's default size: the server's old default
		{"1", "512Mi", 1},     // the smallest memory still runs one worker
		{"1", "768Mi", 2},     // 256Mi + 2 x 256Mi
		{"2", "1Gi", 3},       // memory bounds it below 2 per CPU
		{"2", "4Gi", 4},       // 2 per CPU
		{"4", "2Gi", 7},       // memory again
		{"8", "4Gi", 15},      // and again
		{"8", "32Gi", 16},     // 2 per CPU
		{"1000m", "2Gi", 2},   // millicores
		{"2000m", "513Mi", 1}, // one worker, however little fits
	}
	for _, tc := range cases {
		m, okCPU := CPUMillis(tc.cpu)
		mi, okMem := MemoryMi(tc.memory)
		if !okCPU || !okMem {
			t.Fatalf("bad case %+v", tc)
		}
		if got := DefaultWorkers(m, mi); got != tc.want {
			t.Errorf("DefaultWorkers(cpu %s, memory %s) = %d, want %d", tc.cpu, tc.memory, got, tc.want)
		}
		// The default always fits the memory check an explicit workers input is held to.
		if need := ServerBaseMemoryMi + int(tc.want)*WorkerMemoryMi; need > mi && tc.want > 1 {
			t.Errorf("cpu %s, memory %s: the default %d workers need %dMi", tc.cpu, tc.memory, tc.want, need)
		}
	}
}

// TestParseWorkers: the workers input, or the default derived from the cpu and memory inputs.
func TestParseWorkers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		change map[string]string
		want   int32
	}{
		{nil, 2},
		{map[string]string{"INPUT_CPU": "4"}, 7},
		{map[string]string{"INPUT_CPU": "2", "INPUT_MEMORY": "4Gi"}, 4},
		{map[string]string{"INPUT_MEMORY": "512Mi"}, 1},
		{map[string]string{"INPUT_WORKERS": "1"}, 1},
		{map[string]string{"INPUT_WORKERS": "7"}, 7},                        // 256Mi + 7 x 256Mi = 2Gi exactly
		{map[string]string{"INPUT_WORKERS": "3", "INPUT_MEMORY": "1Gi"}, 3}, // 1Gi exactly
		{map[string]string{"INPUT_WORKERS": "32", "INPUT_CPU": "8", "INPUT_MEMORY": "32Gi"}, 32},
	}
	for _, tc := range cases {
		env := validEnv()
		for k, v := range tc.change {
			env[k] = v
		}
		c, err := parse(env)
		if err != nil {
			t.Errorf("%v: %v", tc.change, err)
			continue
		}
		if c.Workers != tc.want {
			t.Errorf("%v: workers = %d, want %d", tc.change, c.Workers, tc.want)
		}
	}
}
