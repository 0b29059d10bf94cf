//go:build !unix

package data

import (
	"errors"
	"os"
)

// mmapFile is unavailable here; shards are read with ReadAt instead.
func mmapFile(f *os.File, size int64) ([]byte, error) {
	return nil, errors.New("mmap not supported on this platform")
}

func munmap(b []byte) error { return nil }
