//go:build !linux

package compute

// AdviseHugePages does nothing on this system and reports false.
func AdviseHugePages[T any](s []T) bool { return false }
