//go:build unix

package tokenizer

import (
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds a "cpu-MB/s" metric: bytes per CPU second, which stays
// meaningful when the shared machine gives the benchmark only part of a core.
// It includes the runtime's concurrent GC work.
func reportCPU(b *testing.B, start time.Duration, bytesPerOp int64) {
	if cpu := cpuTime() - start; cpu > 0 {
		b.ReportMetric(float64(bytesPerOp)*float64(b.N)/1e6/cpu.Seconds(), "cpu-MB/s")
	}
}
