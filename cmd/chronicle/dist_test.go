package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestDist runs `make dist` for this machine's platform only, into a temporary directory
// with a version of its own, and checks the result: the version is stamped, SHA256SUMS
// matches, and the binary is static, stripped and built with -trimpath. A cold build
// cache costs a minute or two (-trimpath shares no compiled package with go test); a
// warm one, seconds.
func TestDist(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a release binary with make dist; skipped with -short")
	}
	makeBin, err := exec.LookPath("make")
	if err != nil {
		t.Fatalf("make is needed to run make dist: %v", err)
	}
	goBin, err := exec.LookPath("go") // go test puts its own go first on PATH
	if err != nil {
		t.Fatalf("the go command is needed to build: %v", err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	version := fmt.Sprintf("0.0.0-disttest.%d", time.Now().UnixNano()) // no stale binary has it
	name := "chronicle-" + runtime.GOOS + "-" + runtime.GOARCH
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, makeBin, "-s", "-C", root, "dist", "GO="+goBin,
		"PLATFORMS="+runtime.GOOS+"/"+runtime.GOARCH, "VERSION="+version, "DIST="+dir)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make dist: %v\n%s", err, out)
	}
	bin := filepath.Join(dir, name)
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatalf("make dist made no %s: %v", name, err)
	}
	t.Logf("make dist built %s (%.1f MiB) in %s", name, float64(st.Size())/(1<<20), time.Since(start).Round(time.Second))

	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		t.Fatalf("%s version: %v", name, err)
	}
	if first, _, _ := strings.Cut(string(out), "\n"); first != "chronicle "+version {
		t.Fatalf("%s version says %q, want chronicle %s", name, first, version)
	}

	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	if want := hex.EncodeToString(sum[:]) + "  " + name + "\n"; string(sums) != want {
		t.Fatalf("SHA256SUMS = %q, want %q", sums, want)
	}
	if bytes.Contains(data, []byte(root)) {
		t.Fatalf("%s contains the checkout's path %s: built without -trimpath", name, root)
	}

	if runtime.GOOS != "linux" {
		return
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Fatalf("%s is dynamically linked (%s): built with cgo?", name, p.Type)
		}
	}
	for _, s := range []string{".symtab", ".debug_info"} {
		if f.Section(s) != nil {
			t.Fatalf("%s has a %s section: not stripped (-s -w)", name, s)
		}
	}
}
