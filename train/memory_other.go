//go:build !linux

package train

// physicalMemory returns 0: the memory size is not probed on this system.
func physicalMemory() int64 { return 0 }
