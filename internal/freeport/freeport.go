// Package freeport finds loopback ports for tests that must know an address before the
// listener on it exists (a cluster's join list, a restart on the same Raft address).
package freeport

import (
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

// Addr returns a 127.0.0.1 host:port that was free just now. A port the OS hands out for
// ":0" comes from the ephemeral range, which every outgoing connection and ":0" listener
// also draws on, so it can be taken before the caller binds it; ports below that range
// (Linux: 32768-60999) are never handed out so, and one of those is picked when it binds.
func Addr(t testing.TB) string {
	t.Helper()
	for range 200 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(20000+rand.IntN(12000)))
		if ln, err := net.Listen("tcp", addr); err == nil {
			_ = ln.Close()
			return addr
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
		if len(lns) == n {
			return base
		}
	}
	t.Fatalf("freeport: no %d consecutive free ports", n)
	return 0
}
