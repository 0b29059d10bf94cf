package train

import "syscall"

// physicalMemory returns the machine's total RAM in bytes (0 if unknown).
func physicalMemory() int64 {
	var info syscall.Sysinfo_t
	if err := syscall.Sysinfo(&info); err != nil {
		return 0
	}
	return int64(uint64(info.Totalram) * uint64(info.Unit))
}
