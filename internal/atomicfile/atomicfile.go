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
	"strconv"
	"strings"
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
// ".<base>.tmp-<pid>-<random>" next to path with permissions perm (exactly,
// not masked by the umask). It first removes the temporary files that
// writers killed mid-write (SIGKILL, power loss) left in that directory:
// those of this naming whose process no longer exists.
func Create(path string, perm os.FileMode) (*File, error) {
	dir := filepath.Dir(path)
	RemoveStale(dir)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-"+strconv.Itoa(os.Getpid())+"-*")
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
	return WriteWith(path, perm, "", func(f *File) error {
		if _, err := f.Write(data); err != nil {
			return fmt.Errorf("write %s: %w", f.Name(), err)
		}
		return nil
	})
}

// WriteWith writes path atomically with permissions perm, its contents
// written by write: the file is committed when write returns nil and
// discarded otherwise. write's error is returned as it is; those of
// creating and committing the file are prefixed with "label: " (when label
// is not empty).
func WriteWith(path string, perm os.FileMode, label string, write func(f *File) error) error {
	wrap := func(err error) error {
		if label == "" {
			return err
		}
		return fmt.Errorf("%s: %w", label, err)
	}
	f, err := Create(path, perm)
	if err != nil {
		return wrap(err)
	}
	defer f.Abort()
	if err := write(f); err != nil {
		return err
	}
	if err := f.Commit(); err != nil {
		return wrap(err)
	}
	return nil
}

// RemoveStale removes dir's temporary files of this package's naming whose
// writing process has exited (best effort: errors are ignored, and a file
// whose process cannot be checked is kept). It returns the removed paths.
func RemoveStale(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range ents {
		pid, ok := tempPID(e.Name())
		if !ok || !e.Type().IsRegular() || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if os.Remove(p) == nil {
			removed = append(removed, p)
		}
	}
	return removed
}

// tempPID parses the writer's pid out of a temporary file name
// ".<base>.tmp-<pid>-<digits>".
func tempPID(name string) (int, bool) {
	if !strings.HasPrefix(name, ".") {
		return 0, false
	}
	i := strings.LastIndex(name, ".tmp-")
	if i < 1 {
		return 0, false
	}
	pidStr, rnd, ok := strings.Cut(name[i+len(".tmp-"):], "-")
	if !ok || rnd == "" || strings.Trim(rnd, "0123456789") != "" {
		return 0, false
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}
