//go:build !linux

package compute

// AdviseHugePages does nothing on this system and reports false.
func AdviseHugePages(s []float32) bool { return false }
