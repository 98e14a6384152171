package metrics

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// TestHotPathAllocs: once a series exists, recording a command, a batch, a request or a
// Raft entry allocates nothing (a few atomic adds and map reads).
func TestHotPathAllocs(t *testing.T) {
	s := New("test")
	patterns := []string{"/commands/*", "/transfer"}
	s.Commands.Count("transfer", "insufficient_funds") // make the series
	s.HTTP.Observe(patterns, 201, time.Millisecond)
	allocs := testing.AllocsPerRun(1000, func() {
		s.Commands.Count("transfer", CodeOK)
		s.Commands.Count("transfer", "insufficient_funds")
		s.Commands.Observe("transfer", time.Millisecond)
		s.Commands.Batch(3)
		s.HTTP.Observe(patterns, 201, time.Millisecond)
		s.Raft.EntryProposed(12)
		s.Raft.EntryApplied(time.Millisecond)
		s.Raft.LogStored(time.Millisecond)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per recorded command, want 0", allocs)
	}
	if got := counter(t, s, "chronicle_commands_total", "transfer", "insufficient_funds"); got != 1002 {
		t.Fatalf("insufficient_funds count %v, want 1002", got)
	}
}

// TestNilRecorders: metrics off hands out nil recorders that do nothing.
func TestNilRecorders(t *testing.T) {
	var s *Set
	if err := s.Register(); err != nil || s.Registry() != nil {
		t.Fatal("nil set")
	}
	var c *Commands
	c.Count("transfer", CodeOK)
	c.Observe("transfer", time.Second)
	c.Batch(1)
	var h *HTTP
	h.Observe(nil, 200, time.Second)
	var r *Raft
	r.EntryProposed(1)
	r.EntryApplied(time.Second)
	r.LogStored(time.Second)
}

// TestBoundedLabels: label values outside the expected shape, and beyond the caps, fold
// into "other"; the number of series stays bounded whatever comes in.
func TestBoundedLabels(t *testing.T) {
	s := New("test")
	s.Commands.Count("Transfer; DROP", "insufficient_funds")
	s.Commands.Count("transfer", "Not A Code!")
	s.Commands.Count("transfer", strings.Repeat("x", 200))
	if got := counter(t, s, "chronicle_commands_total", Other, "insufficient_funds"); got != 1 {
		t.Errorf("odd type not folded into other: %v", got)
	}
	if got := counter(t, s, "chronicle_commands_total", "transfer", Other); got != 2 {
		t.Errorf("odd codes not folded into other: %v", got)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				s.Commands.Count(fmt.Sprintf("type-%d", i), fmt.Sprintf("code_%d", i))
				s.Commands.Count("deposit", fmt.Sprintf("code_%d", i))
				s.HTTP.Observe([]string{fmt.Sprintf("/r%d", i)}, 200, time.Millisecond)
			}
		}()
	}
	wg.Wait()
	if n := len(family(t, s, "chronicle_commands_total")); n > maxTypes*(maxCodes+1)+maxCodes+8 {
		t.Errorf("%d command series: unbounded", n)
	}
	if got := counter(t, s, "chronicle_commands_total", "deposit", Other); got < 4*(500-maxCodes) {
		t.Errorf("deposit codes beyond the cap: %v counted as other, want at least %d", got, 4*(500-maxCodes))
	}
	if n := len(family(t, s, "chronicle_http_requests_total")); n > maxRoutes+1 {
		t.Errorf("%d HTTP series: unbounded", n)
	}
	// Every command was counted somewhere: nothing is lost to the caps.
	total := 0.0
	for _, v := range gatherCounter(t, s, "chronicle_commands_total") {
		total += v
	}
	if want := 3 + 2*4*500.0; total != want {
		t.Errorf("%v commands counted, want %v", total, want)
	}
}

func gatherCounter(t *testing.T, s *Set, name string) []float64 {
	t.Helper()
	var out []float64
	for _, m := range family(t, s, name) {
		out = append(out, m.GetCounter().GetValue())
	}
	return out
}

// family is the series of metric name in s's registry.
func family(t *testing.T, s *Set, name string) []*dto.Metric {
	t.Helper()
	fams, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			return f.Metric
		}
	}
	return nil
}

// counter is the value of the chronicle_commands_total-like counter name{type,code}.
func counter(t *testing.T, s *Set, name, typ, code string) float64 {
	t.Helper()
	for _, m := range family(t, s, name) {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["type"] == typ && labels["code"] == code {
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func TestRouteLabel(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{nil, "none"},
		{[]string{"/health"}, "/health"},
		{[]string{"/"}, "/"},
		{[]string{"/commands/*", "/transfer"}, "/commands/transfer"},
		{[]string{"/accounts/{id}"}, "/accounts/{id}"},
		{[]string{"/ui/*"}, "/ui/*"},
		{[]string{"/admin/*", "/tokens/*", "/{name}"}, "/admin/tokens/{name}"},
	} {
		if got := RouteLabel(c.in); got != c.want {
			t.Errorf("RouteLabel(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestRaftMetricsOnlyWhereRaftRuns: the Raft recorders join the registry only when a
// node registers Raft.
func TestRaftMetricsOnlyWhereRaftRuns(t *testing.T) {
	s := New("test")
	has := func(name string) bool {
		fams, err := s.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() == name {
				return true
			}
		}
		return false
	}
	if has("chronicle_raft_entry_commands") || has("chronicle_raft_state") {
		t.Fatal("Raft metrics before RegisterRaft")
	}
	if err := s.RegisterRaft(func() RaftStatus { return RaftStatus{State: "Follower", Term: 3} }); err != nil {
		t.Fatal(err)
	}
	if !has("chronicle_raft_entry_commands") || !has("chronicle_raft_state") {
		t.Fatal("no Raft metrics after RegisterRaft")
	}
	for _, m := range family(t, s, "chronicle_raft_state") {
		if want := map[bool]float64{true: 1}[m.Label[0].GetValue() == "follower"]; m.GetGauge().GetValue() != want {
			t.Errorf("chronicle_raft_state{state=%q} = %v, want %v", m.Label[0].GetValue(), m.GetGauge().GetValue(), want)
		}
	}
}

// BenchmarkRecordCommand is what one single-command request adds on the write path:
// its count, latency, HTTP request and the Raft entry it rides in.
func BenchmarkRecordCommand(b *testing.B) {
	s := New("bench")
	patterns := []string{"/commands/*", "/transfer"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.Commands.Count("transfer", CodeOK)
			s.Commands.Observe("transfer", time.Millisecond)
			s.HTTP.Observe(patterns, 201, time.Millisecond)
			s.Raft.EntryProposed(1)
			s.Raft.EntryApplied(time.Millisecond)
			s.Raft.LogStored(time.Millisecond)
		}
	})
}
