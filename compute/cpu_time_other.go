//go:build !unix

package compute

// ProcessCPUSeconds is not available on this platform.
func ProcessCPUSeconds() (float64, bool) { return 0, false }
