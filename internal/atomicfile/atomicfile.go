// Package atomicfile writes files so that a reader sees either the old
// contents or the complete new contents, never a partial file: the data goes
// to a temporary file in the destination directory, which is fsynced, renamed
// over the destination, and then the directory is fsynced.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// File is a temporary file that replaces its destination on Commit. Write to
// it like an *os.File (WriteAt and Seek work too); call Commit to publish it
// or Abort to discard it. Abort after Commit does nothing, so
// `defer f.Abort()` is the usual pattern.
type File struct {
	*os.File
	path string
	done bool
}

// Create starts an atomic write of path: it creates a temporary file named
// ".<base>.tmp*" next to path with permissions perm (exactly, not masked by
// the umask).
func Create(path string, perm os.FileMode) (*File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("create temporary file for %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("chmod %s: %w", f.Name(), err)
	}
	return &File{File: f, path: path}, nil
}

// Path returns the destination path (Name returns the temporary file's).
func (f *File) Path() string { return f.path }

// Commit fsyncs and closes the temporary file, renames it over the
// destination and fsyncs the directory (best effort). On error the
// temporary file is removed.
func (f *File) Commit() error {
	if f.done {
		return errors.New("atomicfile: commit of a finished file " + f.path)
	}
	f.done = true
	tmp := f.Name()
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename to %s: %w", f.path, err)
	}
	if d, err := os.Open(filepath.Dir(f.path)); err == nil {
		d.Sync() // best effort: make the rename durable
		d.Close()
	}
	return nil
}

// Abort closes and removes the temporary file, leaving the destination as it
// was. It does nothing after Commit or a previous Abort.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.Close()
	os.Remove(f.Name())
}

// WriteFile writes data to path atomically with permissions perm.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	return f.Commit()
}
