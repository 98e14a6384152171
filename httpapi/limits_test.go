package httpapi

import (
	"net/http/httptest"
	"testing"
)

// TestRetryable: only requests that cannot take effect twice are forwarded again after a
// try whose outcome is unknown.
func TestRetryable(t *testing.T) {
	for _, c := range []struct {
		method, path, key string
		want              bool
	}{
		{"GET", "/accounts/a", "", true},
		{"POST", "/commands/deposit", "k", true},
		{"POST", "/commands/deposit", "", false},
		{"POST", "/commands/batch", "k", false},
		{"POST", "/cluster/join", "k", false},
		{"DELETE", "/cluster/nodes/n2", "k", false},
	} {
		r := httptest.NewRequest(c.method, c.path, nil)
		if c.key != "" {
			r.Header.Set("Idempotency-Key", c.key)
		}
		if got := retryable(r); got != c.want {
			t.Errorf("%s %s key=%q: retryable %v, want %v", c.method, c.path, c.key, got, c.want)
		}
	}
}

// TestStreamSlots: the caps count per client and in total, and release frees a slot once.
func TestStreamSlots(t *testing.T) {
	s := newStreamSlots(3, 2)
	r1, err := s.acquire("a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.acquire("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.acquire("a"); err == nil {
		t.Fatal("third stream of one client accepted")
	}
	if _, err := s.acquire("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.acquire("c"); err == nil {
		t.Fatal("stream beyond the global cap accepted")
	}
	r1()
	r1()
	if s.open() != 2 {
		t.Fatalf("open %d after one release (twice), want 2", s.open())
	}
	if _, err := s.acquire("c"); err != nil {
		t.Fatal(err)
	}
}
