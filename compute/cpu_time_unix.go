//go:build unix

package compute

import "syscall"

// ProcessCPUSeconds returns the user+system CPU time this process has used
// so far, and whether the platform reports it. Benchmarks on a shared
// machine divide work by it: time spent descheduled does not count.
func ProcessCPUSeconds() (float64, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9, true
}
