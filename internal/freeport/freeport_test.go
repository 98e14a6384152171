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
