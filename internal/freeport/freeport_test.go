package freeport

import (
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
