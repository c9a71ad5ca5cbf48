package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Memory bounds: MLflow needs at least 512Mi; Cloud Run gives at most 32Gi. memoryWant must match them.
const (
	minMemoryMi = 512
	maxMemoryMi = 32 << 10
	memoryWant  = "use a size from 512Mi to 32Gi, such as 2Gi (MLflow needs at least 512Mi)"
	cpuWant     = "use 1, 2, 4, 6 or 8"
)

// memoryRE is a whole number of MiB or GiB; six digits are more than any valid size needs, and keep
// the conversion far from overflow.
var memoryRE = regexp.MustCompile(`^([1-9][0-9]{0,5})(Mi|Gi)$`)

// MemoryMi converts a memory quantity with a Mi or Gi suffix to MiB.
func MemoryMi(v string) (int, bool) {
	m := memoryRE.FindStringSubmatch(v)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return 0, false
	}
	if m[2] == "Gi" {
		n *= 1024
	}
	return n, true
}

// cpuRE is a whole number of CPUs or of millicores, written plainly: strconv alone would also take
// "+1" or "01", which the action would then send to Cloud Run as they are.
var cpuRE = regexp.MustCompile(`^[1-9][0-9]{0,5}m?$`)

// CPUMillis converts a CPU quantity ("1", "2", "1000m") to millicores, accepting Cloud Run's sizes.
func CPUMillis(v string) (int, bool) {
	if !cpuRE.MatchString(v) {
		return 0, false
	}
	n, _ := strconv.Atoi(strings.TrimSuffix(v, "m")) // cpuRE leaves no error and no overflow
	if !strings.HasSuffix(v, "m") {
		n *= 1000
	}
	switch n {
	case 1000, 2000, 4000, 6000, 8000:
		return n, true
	}
	return 0, false
}

// sizeProblem says what Cloud Run would refuse in a cpu and memory pair (more memory needs more CPUs,
// and more CPUs need a minimum of memory); nil when the pair is valid or either one is malformed, which
// is reported on its own.
func sizeProblem(cpu, memory string) error {
	m, okCPU := CPUMillis(cpu)
	mi, okMem := MemoryMi(memory)
	if !okCPU || !okMem {
		return nil
	}
	for _, r := range []struct{ aboveMi, minCPU int }{{24 << 10, 8000}, {16 << 10, 6000}, {8 << 10, 4000}, {4 << 10, 2000}} {
		if mi > r.aboveMi && m < r.minCPU {
			return fmt.Errorf("memory %s needs cpu %d or more on Cloud Run; raise cpu or lower memory", memory, r.minCPU/1000)
		}
	}
	for _, r := range []struct{ cpu, minMi int }{{8000, 4 << 10}, {6000, 4 << 10}, {4000, 2 << 10}} {
		if m >= r.cpu && mi < r.minMi {
			return fmt.Errorf("cpu %s needs memory %dGi or more on Cloud Run; raise memory or lower cpu", cpu, r.minMi>>10)
		}
	}
	return nil
}
