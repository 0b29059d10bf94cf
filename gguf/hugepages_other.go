//go:build !linux

package gguf

import (
	"errors"
	"io"
)

// hugePagesOffered reports false: transparent huge pages are Linux's.
func hugePagesOffered() bool { return false }

// copyToHugePages is unavailable off Linux.
func copyToHugePages(io.ReaderAt, int) ([]byte, func() error, error) {
	return nil, nil, errors.New("transparent huge pages are not available on this platform")
}
