//go:build unix

package data

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestDocumentsUnreadable(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := collect(t, Source{Name: "p", Path: fifo}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("fifo source: %v", err)
	}
	// Inside a directory, special files are skipped, not read.
	writeFile(t, filepath.Join(dir, "ok.txt"), []byte("fine\n"))
	if docs, _, err := collect(t, Source{Name: "d", Path: dir}); err != nil || len(docs) != 1 {
		t.Errorf("directory with a fifo: %d docs, %v", len(docs), err)
	}
	locked := filepath.Join(dir, "locked.txt")
	writeFile(t, locked, []byte("secret\n"))
	if err := os.Chmod(locked, 0); err != nil {
		t.Fatal(err)
	}
	if f, err := os.Open(locked); err == nil {
		f.Close() // running as root: permissions do not apply
		return
	}
	if _, _, err := collect(t, Source{Name: "l", Path: locked}); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("unreadable file: %v", err)
	}
	if _, _, err := collect(t, Source{Name: "d", Path: dir}); err == nil || !strings.Contains(err.Error(), "locked.txt") {
		t.Errorf("directory with an unreadable file: %v", err)
	}
}
