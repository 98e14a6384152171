package diskguard

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/chronicle-ledger/chronicle"
)

func TestParseReserve(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Reserve
	}{
		{"", DefaultReserve},
		{"default", DefaultReserve},
		{"1%", Reserve{Percent: 1}},
		{"0.5%", Reserve{Percent: 0.5}},
		{"256MiB", Reserve{Bytes: 256 << 20}},
		{"1GiB", Reserve{Bytes: 1 << 30}},
		{"500MB", Reserve{Bytes: 500e6}},
		{"1.5 GiB", Reserve{Bytes: 3 << 29}},
		{"4096", Reserve{Bytes: 4096}},
		{"0", Reserve{}},
	} {
		got, err := ParseReserve(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseReserve(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"x", "-1MiB", "100%", "-2%", "12QB", "NaN%"} {
		if _, err := ParseReserve(bad); err == nil {
			t.Errorf("ParseReserve(%q) accepted", bad)
		}
	}
	if !(Reserve{}).Off() || DefaultReserve.Off() {
		t.Error("Off: only a zero reserve turns the guard off")
	}
}

func TestReserveFor(t *testing.T) {
	const gib = 1 << 30
	for _, c := range []struct {
		r     Reserve
		total uint64
		want  uint64
	}{
		{DefaultReserve, 10 * gib, 10 * gib / 100},     // 1 % is smaller
		{DefaultReserve, 1000 * gib, 256 << 20},        // 256 MiB is smaller
		{Reserve{Percent: 5}, 100 << 20, 5 << 20},      // percentage of the size
		{Reserve{Bytes: 8 << 20}, 1000 * gib, 8 << 20}, // bytes whatever the size
	} {
		if got := c.r.For(c.total); got != c.want {
			t.Errorf("%v.For(%d) = %d, want %d", c.r, c.total, got, c.want)
		}
	}
}

// fakeFS is a filesystem per directory whose free space the test sets.
type fakeFS struct {
	mu   sync.Mutex
	free map[string]uint64
}

func (f *fakeFS) set(dir string, free uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.free[dir] = free
}

func (f *fakeFS) statfs(dir string) (Usage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	free, ok := f.free[dir]
	if !ok {
		return Usage{}, &fs.PathError{Op: "statfs", Path: dir, Err: fs.ErrNotExist}
	}
	return Usage{Free: free, Total: 100 << 20}, nil
}

// Below the reserve on any watched filesystem, Check refuses with 507
// insufficient_storage naming the free space and the reserve; writes resume only above
// the reserve plus the margin.
func TestGuardHysteresis(t *testing.T) {
	f := &fakeFS{free: map[string]uint64{"/a": 50 << 20, "/b": 60 << 20}}
	g := New(Config{Dirs: []string{"/a", "/b", "/missing"}, Reserve: Reserve{Bytes: 10 << 20}, Statfs: f.statfs})
	if err := g.Check(); err != nil {
		t.Fatalf("plenty of space: %v", err)
	}
	f.set("/b", 9<<20)
	st := g.Refresh()
	if !st.Low || st.Dir != "/b" || st.Err != "" {
		t.Fatalf("below the reserve on /b: state %+v", st)
	}
	err := g.Check()
	var e *chronicle.Error
	if !errors.As(err, &e) || e.Kind != chronicle.KindInsufficientStorage || e.Code != chronicle.CodeInsufficientStorage || !e.Safe {
		t.Fatalf("Check below the reserve = %#v", err)
	}
	for _, want := range []string{"9.0 MiB free", "/b", "reserve of 10.0 MiB"} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("message %q lacks %q", e.Message, want)
		}
	}
	f.set("/b", 10<<20+1) // above the reserve, within the margin: still refused
	if st := g.Refresh(); !st.Low {
		t.Fatalf("just above the reserve, writes resumed without hysteresis: %+v", st)
	}
	f.set("/b", 12<<20)
	if st := g.Refresh(); st.Low || g.Check() != nil {
		t.Fatalf("above reserve plus margin: still refusing: %+v", st)
	}
}

// A measurement that fails keeps the previous verdict and says why.
func TestGuardStatfsError(t *testing.T) {
	f := &fakeFS{free: map[string]uint64{"/a": 1 << 20}}
	g := New(Config{Dirs: []string{"/a"}, Reserve: Reserve{Bytes: 10 << 20}, Statfs: f.statfs})
	if !g.State().Low {
		t.Fatal("not low below the reserve")
	}
	f.mu.Lock()
	delete(f.free, "/a")
	f.mu.Unlock()
	if st := g.Refresh(); !st.Low || st.Err == "" {
		t.Fatalf("after a failed measurement: %+v, want still low with an error", st)
	}
}

// The real statfs measures a real directory.
func TestStatfsReal(t *testing.T) {
	if !Supported {
		t.Skip("free space is not measured on this platform")
	}
	u, err := statfs(t.TempDir())
	if err != nil || u.Total == 0 || u.Free > u.Total {
		t.Fatalf("statfs = %+v, %v", u, err)
	}
	if _, err := statfs(t.TempDir() + "/nope"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("statfs of a missing dir: %v, want not exist", err)
	}
}

func TestNilGuard(t *testing.T) {
	var g *Guard
	if g.Check() != nil || g.State().Low {
		t.Fatal("a nil guard refuses")
	}
	if New(Config{Dirs: []string{"/"}, Reserve: Reserve{}}) != nil {
		t.Fatal("a zero reserve built a guard")
	}
}
