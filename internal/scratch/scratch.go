// Package scratch holds helpers for reusable scratch buffers.
package scratch

// Grow returns buf resliced to length n when its capacity allows, and
// otherwise a new zeroed slice of length n. The contents of a reused buffer
// are left as they were: callers overwrite or clear what they use.
func Grow[T any](buf []T, n int) []T {
	if cap(buf) >= n {
		return buf[:n]
	}
	return make([]T, n)
}
