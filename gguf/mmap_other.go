//go:build !unix

package gguf

import (
	"errors"
	"os"
)

// mapFile is unavailable here: tensors are read through the file instead.
func mapFile(*os.File, int64) ([]byte, func() error, error) {
	return nil, nil, errors.New("memory mapping is not supported on this platform")
}
