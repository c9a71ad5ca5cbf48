package config

import "fmt"

// Memory the server needs, measured with MLflow 3.17.2 (uvicorn, SQLite, after a few hundred runs were
// logged and searched): each MLflow worker holds about 190-230 MiB (proportional set size; 245-290 MiB
// resident), and the rest (the `mlflow server` process that waits on uvicorn, uvicorn's supervisor and
// the deploy-mlflow server) about 230 MiB. Each is rounded up, so 512Mi, Cloud Run's smallest memory the
// action takes, still runs one worker.
const (
	WorkerMemoryMi     = 256
	ServerBaseMemoryMi = 256
	// WorkersPerCPU is the default's ratio: a worker waits on the database and the bucket for much of a
	// request, so two keep a CPU busy (the server's default was 2 workers on Cloud Run's default 1 CPU).
	WorkersPerCPU = 2
	maxWorkers    = 32
)

// workersFit is how many workers fit in memory MiB, at least 1.
func workersFit(memoryMi int) int {
	return max(1, (memoryMi-ServerBaseMemoryMi)/WorkerMemoryMi)
}

// DefaultWorkers is the number of MLflow workers for a cpu and memory limit when the workers input is
// not set: WorkersPerCPU per CPU, as many as fit in memory, at least 1.
func DefaultWorkers(cpuMillis, memoryMi int) int32 {
	return int32(max(1, min(WorkersPerCPU*cpuMillis/1000, workersFit(memoryMi))))
}

// workers reads how many uvicorn workers MLflow runs, and checks that they fit in the memory limit.
// resources must have run: the default and the check depend on cpu and memory.
func (p *parser) workers() {
	m, okCPU := CPUMillis(p.c.CPU)
	mi, okMem := MemoryMi(p.c.Memory)
	if !okCPU || !okMem {
		// cpu or memory is refused on its own; a default keeps the config whole.
		m, mi = 1000, minMemoryMi
	}
	p.c.Workers = DefaultWorkers(m, mi)
	v := p.input("workers")
	if v == "" {
		return
	}
	refused := len(p.errs)
	p.c.Workers = p.integer("workers", p.c.Workers, 1, maxWorkers)
	need := ServerBaseMemoryMi + int(p.c.Workers)*WorkerMemoryMi
	if okCPU && okMem && len(p.errs) == refused && need > mi {
		p.fail("workers", v, fmt.Sprintf("%s workers need about %dMi (%dMi each, plus %dMi for the rest of the server), more than memory %s; "+
			"lower workers to %d or raise memory to %dMi or more", v, need, WorkerMemoryMi, ServerBaseMemoryMi, p.c.Memory, workersFit(mi), need))
	}
}
