//go:build linux

package gguf

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// hugePagesOffered reports whether transparent huge pages may back memory
// that asks for them (enabled is "always" or "madvise").
func hugePagesOffered() bool {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	return err == nil && (bytes.Contains(b, []byte("[always]")) || bytes.Contains(b, []byte("[madvise]")))
}

// copyToHugePages reads the n bytes of r (the file behind a read-only
// mapping) into a new anonymous private mapping advised for transparent
// huge pages, and returns it, read-only, with its unmapper. It reads
// through the file, not the mapping: pread copies straight from the page
// cache, where faulting in the mapping's 4 KB pages one by one costs far
// more than the copy, and the mapping's pages never join this process's
// resident memory.
func copyToHugePages(r io.ReaderAt, n int) ([]byte, func() error, error) {
	dst, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) ([]byte, func() error, error) {
		unix.Munmap(dst)
		return nil, nil, err
	}
	if err := unix.Madvise(dst, unix.MADV_HUGEPAGE); err != nil {
		return fail(err)
	}
	// Two readers: one core alone does not saturate the copy.
	const chunk, readers = 32 << 20, 2
	var wg sync.WaitGroup
	errs := make([]error, readers)
	for w := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for off := w * chunk; off < n && errs[w] == nil; off += readers * chunk {
				_, errs[w] = r.ReadAt(dst[off:min(off+chunk, n)], int64(off))
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fail(err)
	}
	// The weights are never written: a stray write faults instead of
	// silently changing the model.
	if err := unix.Mprotect(dst, unix.PROT_READ); err != nil {
		return fail(err)
	}
	return dst, func() error { return unix.Munmap(dst) }, nil
}
