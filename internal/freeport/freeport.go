// Package freeport finds loopback ports for tests that must know an address before the
// listener on it exists (a cluster's join list, a restart on the same Raft address).
package freeport

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// claimDir holds one empty file per port handed out and not yet released, shared by
// every test process on the machine: go test runs packages in parallel, and two
// processes that each found the same port free could otherwise both hand it out before
// either binds it.
func claimDir() string { return filepath.Join(os.TempDir(), "chronicle-freeport") }

// staleClaim is the age after which a claim is taken to be left over from a test process
// that died before its cleanup.
const staleClaim = time.Hour

// claim reserves port until release is called; ok is false when another test holds it.
func claim(port int) (release func(), ok bool) {
	dir := claimDir()
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return func() {}, true // no shared directory: the bind check alone
	}
	path := filepath.Join(dir, strconv.Itoa(port))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
	if errors.Is(err, fs.ErrExist) {
		if fi, serr := os.Stat(path); serr == nil && time.Since(fi.ModTime()) > staleClaim {
			_ = os.Remove(path)
		}
		return nil, false
	}
	if err != nil {
		return func() {}, true
	}
	_ = f.Close()
	return func() { _ = os.Remove(path) }, true
}

// Addr returns a 127.0.0.1 host:port that was free just now. A port the OS hands out for
// ":0" comes from the ephemeral range, which every outgoing connection and ":0" listener
// also draws on, so it can be taken before the caller binds it; ports below that range
// (Linux: 32768-60999) are never handed out so, and one of those is picked when it binds.
func Addr(t testing.TB) string {
	t.Helper()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if ln, err := net.Listen("tcp", addr); err == nil {
			_ = ln.Close()
			if release, ok := claim(port); ok {
				t.Cleanup(release)
				return addr
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("freeport: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Addrs returns n distinct addresses from Addr.
func Addrs(t testing.TB, n int) []string {
	t.Helper()
	seen := map[string]bool{}
	var out []string
	for len(out) < n {
		if a := Addr(t); !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

// Block returns the first of n consecutive 127.0.0.1 ports that were all free just now,
// below the ephemeral range as Addr's, for a program that numbers its ports from a base
// (scripts/cluster.sh's HTTP_BASE, RAFT_BASE, NATS_BASE).
func Block(t testing.TB, n int) int {
	t.Helper()
	for range 200 {
		base := 20000 + rand.IntN(12000-n)
		var lns []net.Listener
		for p := base; p < base+n; p++ {
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				break
			}
			lns = append(lns, ln)
		}
		for _, ln := range lns {
			_ = ln.Close()
		}
		if len(lns) == n && claimAll(t, base, n) {
			return base
		}
	}
	t.Fatalf("freeport: no %d consecutive free ports", n)
	return 0
}

// claimAll claims n ports from base for t's lifetime, or none.
func claimAll(t testing.TB, base, n int) bool {
	var releases []func()
	for p := base; p < base+n; p++ {
		release, ok := claim(p)
		if !ok {
			for _, r := range releases {
				r()
			}
			return false
		}
		releases = append(releases, release)
	}
	for _, r := range releases {
		t.Cleanup(r)
	}
	return true
}
