package node

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// dirWrites watches dir with inotify (the kernel's own record of what happened to its
// entries) and returns a function that lists, for each entry name, the events seen so
// far: "create", "modify", "close-write", "moved-to".
func dirWrites(t *testing.T, dir string) func() map[string][]string {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		t.Skipf("inotify: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_CREATE|syscall.IN_MODIFY|syscall.IN_CLOSE_WRITE|syscall.IN_MOVED_TO); err != nil {
		t.Fatalf("inotify watch %s: %v", dir, err)
	}
	kinds := []struct {
		mask uint32
		name string
	}{{syscall.IN_CREATE, "create"}, {syscall.IN_MODIFY, "modify"}, {syscall.IN_CLOSE_WRITE, "close-write"}, {syscall.IN_MOVED_TO, "moved-to"}}
	seen := map[string][]string{}
	return func() map[string][]string {
		t.Helper()
		buf := make([]byte, 64<<10)
		for {
			n, err := syscall.Read(fd, buf)
			if errors.Is(err, syscall.EAGAIN) {
				return seen // the events of every call that returned are queued by now
			}
			if err != nil {
				t.Fatalf("read inotify events: %v", err)
			}
			for b := buf[:n]; len(b) >= syscall.SizeofInotifyEvent; {
				mask := binary.NativeEndian.Uint32(b[4:8])
				nameLen := int(binary.NativeEndian.Uint32(b[12:16]))
				name := string(bytes.TrimRight(b[syscall.SizeofInotifyEvent:syscall.SizeofInotifyEvent+nameLen], "\x00"))
				b = b[syscall.SizeofInotifyEvent+nameLen:]
				for _, k := range kinds {
					if mask&k.mask != 0 {
						seen[name] = append(seen[name], k.name)
					}
				}
			}
		}
	}
}

// TestBootstrapTokenFileAppearsWhole: the bootstrap token file a node writes appears
// under its name already complete (the name is created once and never written through,
// so no crash can leave it torn); a torn temporary file an earlier crash left does not
// stop it, no temporary file of its own is left, and an existing file is read, never
// replaced.
func TestBootstrapTokenFileAppearsWhole(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "admin.token")
	// What a crash in the middle of an earlier write leaves.
	leftover := ".admin.token.4242.tmp"
	if err := os.WriteFile(filepath.Join(dir, leftover), []byte("chr_0123"), 0o600); err != nil {
		t.Fatal(err)
	}
	events := dirWrites(t, dir)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	secret, err := bootstrapSecret(path, log)
	if err != nil {
		t.Fatalf("bootstrapSecret with a torn leftover beside the file: %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != secret+"\n" || !strings.HasPrefix(secret, "chr_") {
		t.Fatalf("token file %q (%v); want the secret %q and a newline", b, err, secret)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v (%v); want 0600", fi.Mode().Perm(), err)
	}
	if got := events()["admin.token"]; len(got) != 1 || got[0] != "create" {
		t.Fatalf("the token file's name saw %q; want one create and no write through it (a crash between them leaves it torn)", got)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Name() != leftover || entries[1].Name() != "admin.token" {
		t.Fatalf("%s holds %v; want the token file and the earlier leftover only", dir, entries)
	}

	// The next start reads the file; it is not replaced.
	again, err := bootstrapSecret(path, log)
	if err != nil || again != secret {
		t.Fatalf("second start: %q, %v; want the same secret", again, err)
	}
	if got := events()["admin.token"]; len(got) != 1 {
		t.Fatalf("the second start wrote the token file: %q", got)
	}
}
