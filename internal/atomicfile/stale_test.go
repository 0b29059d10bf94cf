package atomicfile

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain lets the test binary act as a writer that is killed mid-write.
func TestMain(m *testing.M) {
	if dir := os.Getenv("ATOMICFILE_HALF_WRITE"); dir != "" {
		f, err := Create(filepath.Join(dir, "big.bin"), 0o644)
		if err != nil {
			os.Exit(3)
		}
		f.Write(make([]byte, 1<<16))
		os.Stdout.WriteString(f.Name() + "\n")
		select {} // wait for SIGKILL
	}
	os.Exit(m.Run())
}

// TestStaleTempFilesRemoved kills a writer with SIGKILL while its temporary
// file exists: the next write to that folder removes it, and leaves the
// temporary files of live writers and other files alone.
func TestStaleTempFilesRemoved(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ATOMICFILE_HALF_WRITE="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		t.Fatalf("writer: %v", err)
	}
	stale := strings.TrimSpace(line)
	cmd.Process.Kill() // SIGKILL: no deferred Abort runs
	cmd.Wait()
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("the killed writer's temporary file is missing: %v", err)
	}
	// A live writer's temporary file (ours) and unrelated hidden files stay.
	live, err := Create(filepath.Join(dir, "live.bin"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Abort()
	os.WriteFile(filepath.Join(dir, ".other.tmp"), []byte("x"), 0o644)
	if err := WriteFile(filepath.Join(dir, "small.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary file %s still there after the next write (%v)", stale, err)
	}
	for _, keep := range []string{live.Name(), filepath.Join(dir, ".other.tmp"), filepath.Join(dir, "small.json")} {
		if _, err := os.Stat(keep); err != nil {
			t.Errorf("%s was removed: %v", keep, err)
		}
	}
}
