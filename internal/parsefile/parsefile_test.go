package parsefile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenPassesFileAndSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.bin")
	if err := os.WriteFile(path, []byte("hello world"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, f, err := Open("test", path, func(r io.ReaderAt, size int64) (string, error) {
		b := make([]byte, 5)
		if _, err := r.ReadAt(b, size-5); err != nil {
			return "", err
		}
		return string(b), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got != "world" {
		t.Errorf("parsed %q, want %q", got, "world")
	}
	// The file stays open for the parsed value.
	b := make([]byte, 5)
	if _, err := f.ReadAt(b, 0); err != nil || string(b) != "hello" {
		t.Errorf("ReadAt after Open: %q, %v", b, err)
	}
}

func TestOpenErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.bin")
	_, f, err := Open("test", missing, func(io.ReaderAt, int64) (int, error) {
		t.Error("parse called for a missing file")
		return 0, nil
	})
	if err == nil || f != nil || !strings.HasPrefix(err.Error(), "test: ") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: file %v, error %v", f, err)
	}

	path := filepath.Join(t.TempDir(), "bad.bin")
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := errors.New("bad magic")
	var seen io.ReaderAt
	_, f, err = Open("test", path, func(r io.ReaderAt, _ int64) (int, error) {
		seen = r
		return 0, bad
	})
	if f != nil || !errors.Is(err, bad) || err.Error() != path+": bad magic" {
		t.Errorf("parse error: file %v, error %v", f, err)
	}
	// The file was closed.
	if _, err := seen.ReadAt(make([]byte, 1), 0); err == nil {
		t.Error("file still open after a parse error")
	}
}
