package freeport

import (
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

// The addresses bind, are distinct, and lie below the ephemeral range.
func TestAddrs(t *testing.T) {
	for _, a := range Addrs(t, 20) {
		_, port, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		if p, _ := strconv.Atoi(port); p < 20000 || p >= 32000 {
			t.Fatalf("port %d outside 20000-31999", p)
		}
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("%s does not bind: %v", a, err)
		}
		ln.Close()
	}
}

// A block's ports are consecutive, bind, and lie below the ephemeral range.
func TestBlock(t *testing.T) {
	base := Block(t, 9)
	if base < 20000 || base+9 > 32000 {
		t.Fatalf("block %d-%d outside 20000-31999", base, base+8)
	}
	for p := base; p < base+9; p++ {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d does not bind: %v", p, err)
		}
		ln.Close()
	}
}

// TestClaimExcludes: a port claimed by one test (in any process on the machine) is not
// handed out to another until released.
func TestClaimExcludes(t *testing.T) {
	port := 31999 - rand.IntN(100)
	release, ok := claim(port)
	if !ok {
		t.Skipf("port %d is claimed by another test process right now", port)
	}
	if _, again := claim(port); again {
		t.Fatal("a claimed port was claimed again")
	}
	release()
	r2, ok := claim(port)
	if !ok {
		t.Fatal("a released port could not be claimed")
	}
	r2()
}
