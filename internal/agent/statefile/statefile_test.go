package statefile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteIsPrivateAndWholeAndReadIsBounded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := Write(dir, "state.json", []byte("first")); err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, "state.json", []byte("second")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "state.json")
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%v %v, want a 0600 file", fi, err)
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("directory %v %v, want 0700", di, err)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("the temporary file is left behind: %v", err)
	}
	if b, err := Read(path, 6); err != nil || string(b) != "second" {
		t.Errorf("Read = %q, %v", b, err)
	}
	if _, err := Read(path, 5); err == nil || !strings.Contains(err.Error(), "over 5 bytes") {
		t.Errorf("Read past its bound = %v", err)
	}
}
