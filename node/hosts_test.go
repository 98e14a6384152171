package node

import (
	"slices"
	"testing"
	"time"
)

// TestAPIHosts: the Host policy each kind of deployment gets: a loopback listener
// answers to loopback names and its advertise host; a listener on every interface (the
// compose files: service names as advertise URLs) to any Host unless told otherwise.
func TestAPIHosts(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"default loopback", Config{HTTPAddr: "127.0.0.1:4000"}, []string{"localhost", "127.0.0.1"}},
		{"localhost listener", Config{HTTPAddr: "localhost:4000"}, []string{"localhost", "localhost"}},
		{"ipv6 loopback with advertise", Config{HTTPAddr: "[::1]:4000", AdvertiseURL: "http://ledger.lan:8080/"}, []string{"localhost", "ledger.lan", "::1"}},
		{"compose", Config{HTTPAddr: "0.0.0.0:4000", AdvertiseURL: "http://n1:4000"}, nil},
		{"every interface", Config{HTTPAddr: ":4000"}, nil},
		{"lan address", Config{HTTPAddr: "10.0.0.5:4000"}, nil},
		{"compose restricted", Config{HTTPAddr: "0.0.0.0:4000", AdvertiseURL: "http://n1:4000", AllowedHosts: []string{"ledger.example.com"}},
			[]string{"localhost", "ledger.example.com", "n1"}},
		{"lan restricted", Config{HTTPAddr: "10.0.0.5:4000", AllowedHosts: []string{"ledger.internal:443"}},
			[]string{"localhost", "ledger.internal:443", "10.0.0.5"}},
	} {
		if got := apiHosts(tc.cfg); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestBusLimits: the JetStream stream a node creates is bounded by default, limits can be
// set, and a negative one means none.
func TestBusLimits(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      Config
		age      time.Duration
		maxBytes int64
	}{
		{"defaults", Config{}, DefaultNATSMaxAge, DefaultNATSMaxBytes},
		{"set", Config{NATSMaxAge: time.Hour, NATSMaxBytes: 1 << 20}, time.Hour, 1 << 20},
		{"unlimited", Config{NATSMaxAge: -1, NATSMaxBytes: -1}, 0, 0},
	} {
		got := tc.cfg.busConfig()
		if got.MaxAge != tc.age || got.MaxBytes != tc.maxBytes {
			t.Errorf("%s: max age %s, max bytes %d; want %s, %d", tc.name, got.MaxAge, got.MaxBytes, tc.age, tc.maxBytes)
		}
	}
}
