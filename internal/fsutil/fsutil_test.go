package fsutil

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileAtomicReplacesAndLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	for _, content := range []string{"first\n", "second, longer\n", "3\n"} {
		if err := WriteFileAtomic(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != content {
			t.Fatalf("read back %q, %v; want %q", b, err, content)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temporary file left behind: %v", err)
	}
}

func TestWriteFileAtomicMissingDirFails(t *testing.T) {
	if err := WriteFileAtomic(filepath.Join(t.TempDir(), "no", "such", "f"), []byte("x"), 0o600); err == nil {
		t.Fatal("writing into a missing directory succeeded")
	}
	if err := SyncDir(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("syncing a missing directory succeeded")
	}
}

// names lists the entries of dir.
func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// TestWriteNewNeverReplaces: WriteNew makes the file (mode 0600) with the data, keeps an
// existing one as it is, leaves no temporary file, and is not stopped by a torn
// temporary file an earlier crash left, which it leaves alone.
func TestWriteNewNeverReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "admin.token")
	leftover := filepath.Join(dir, ".admin.token.123456.tmp")
	if err := os.WriteFile(leftover, []byte("chr_tor"), 0o600); err != nil {
		t.Fatal(err)
	}
	exists, err := WriteNew(path, []byte("first\n"))
	if err != nil || exists {
		t.Fatalf("WriteNew of a new file: exists %v, %v", exists, err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "first\n" {
		t.Fatalf("read back %q, %v", b, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	exists, err = WriteNew(path, []byte("second\n"))
	if err != nil || !exists {
		t.Fatalf("WriteNew over an existing file: exists %v, %v; want it reported", exists, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "first\n" {
		t.Fatalf("WriteNew replaced an existing file: %q", b)
	}
	if got := names(t, dir); len(got) != 2 || got[0] != filepath.Base(leftover) || got[1] != "admin.token" {
		t.Fatalf("%s holds %q; want the file and the earlier leftover only", dir, got)
	}
	if _, err := WriteNew(filepath.Join(dir, "missing", "f"), []byte("x")); err == nil {
		t.Fatal("WriteNew into a missing directory succeeded")
	}
}

// TestNewFileCommitKeepsAFileThatAppeared: a name taken between PrepareNew and Commit
// (another process, say) is reported and kept, and the prepared data goes nowhere.
func TestNewFileCommitKeepsAFileThatAppeared(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	f, exists, err := PrepareNew(path)
	if err != nil || exists {
		t.Fatalf("PrepareNew: exists %v, %v", exists, err)
	}
	if err := os.WriteFile(path, []byte("theirs\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	exists, err = f.Commit([]byte("ours\n"))
	f.Discard()
	if err != nil || !exists {
		t.Fatalf("Commit onto a name taken meanwhile: exists %v, %v; want it reported", exists, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "theirs\n" {
		t.Fatalf("Commit replaced the file that appeared: %q", b)
	}
	if got := names(t, dir); len(got) != 1 {
		t.Fatalf("%s holds %q; want the file only", dir, got)
	}
	if _, exists, err := PrepareNew(path); err != nil || !exists {
		t.Fatalf("PrepareNew of an existing file: exists %v, %v", exists, err)
	}
	if got := names(t, dir); len(got) != 1 {
		t.Fatalf("PrepareNew of an existing file left %q", got)
	}
}
