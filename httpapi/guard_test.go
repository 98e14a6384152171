package httpapi

import "testing"

func TestHostPolicy(t *testing.T) {
	p := newHostPolicy([]string{"Ledger.Internal", "api.example.com:8443", "n1"})
	for host, want := range map[string]bool{
		"ledger.internal": true, "ledger.internal:4000": true, "LEDGER.INTERNAL.:4000": true,
		"api.example.com:8443": true, "api.example.com": false, "api.example.com:443": false,
		"localhost:1": true, "127.0.0.1:4000": true, "[::1]:4000": true, "[::1]": true, "n1:4000": true,
		"evil.example": false, "ledger.internal.evil.example": false, "": false, "127.0.0.2:4000": false,
	} {
		if got := p.allows(host); got != want {
			t.Errorf("Host %q: allowed %v, want %v", host, got, want)
		}
	}
	if !newHostPolicy(nil).allows("anything.example:1") {
		t.Error("an empty policy must accept any Host")
	}
}

func TestOriginAllowed(t *testing.T) {
	allowed := map[string]bool{"http://localhost:3000": true}
	for _, tc := range []struct {
		origin, host string
		any, want    bool
	}{
		{"http://127.0.0.1:4000", "127.0.0.1:4000", false, true},
		{"https://ledger.example.com", "ledger.example.com", false, true},
		{"http://LOCALHOST:4000", "localhost:4000", false, true},
		{"http://localhost:3000", "127.0.0.1:4000", false, true},
		{"http://localhost:3000/", "127.0.0.1:4000", false, true},
		{"http://localhost:3001", "127.0.0.1:4000", false, false},
		{"http://evil.example", "127.0.0.1:4000", false, false},
		{"http://evil.example", "127.0.0.1:4000", true, true},
		{"null", "127.0.0.1:4000", true, false},
		{"", "127.0.0.1:4000", true, false},
		{"ftp://127.0.0.1:4000", "127.0.0.1:4000", false, false},
		{"http://127.0.0.1:4001", "127.0.0.1:4000", false, false},
		{"http://x@127.0.0.1:4000", "127.0.0.1:4000", false, false},
		{"%zz", "127.0.0.1:4000", false, false},
	} {
		if got := originAllowed(tc.origin, tc.host, tc.any, allowed); got != tc.want {
			t.Errorf("Origin %q on Host %q (any %v): %v, want %v", tc.origin, tc.host, tc.any, got, tc.want)
		}
	}
}
