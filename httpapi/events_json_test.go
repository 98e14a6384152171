package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/api"
)

// goldenEvents reads the fixture log's events, plus one with text encoding/json escapes.
func goldenEvents(t *testing.T) []chronicle.Event {
	t.Helper()
	f, err := os.Open("../testdata/golden/events.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []chronicle.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e chronicle.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil || len(out) == 0 {
		t.Fatalf("read %d golden events: %v", len(out), err)
	}
	odd := out[0]
	odd.Position, odd.Data.Description = 1<<40, "<b>&\u2028\x00\xff\"\\"
	odd.Metadata = map[string]string{"z": "\t", "a<": "&"}
	odd.CreatedAt = time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 5*3600+1800))
	return append(out, odd)
}

// TestEventsPageMatchesWriteJSON: the hand-written page of GET /events is what writeJSON
// made of api.Events.
func TestEventsPageMatchesWriteJSON(t *testing.T) {
	all := goldenEvents(t)
	for _, n := range []int{0, 1, 2, 17, len(all)} {
		for _, next := range []uint64{0, 42} {
			evs := all[:n]
			rec := httptest.NewRecorder()
			writeJSON(rec, 200, api.Events{Events: append([]chronicle.Event{}, evs...), Total: n, NextAfter: next})
			got := appendEventsPage([]byte("x"), chronicle.EncodeEvents(evs), next)[1:]
			if !bytes.Equal(got, rec.Body.Bytes()) {
				t.Fatalf("%d events, next %d:\n got %s\nwant %s", n, next, got, rec.Body.Bytes())
			}
		}
	}
}

// TestFrameSSE: a frame renders as the hub rendered events before frames shared their JSON.
func TestFrameSSE(t *testing.T) {
	h := newHub(nil, nil, 10)
	evs := goldenEvents(t)
	frames := h.makeFrames(chronicle.EncodeEvents(evs))
	if h.encoded.Load() != uint64(len(evs)) {
		t.Fatalf("encoded counter %d, want %d", h.encoded.Load(), len(evs))
	}
	for i, e := range evs {
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Appendf(nil, "id: %d\nevent: %s\ndata: %s\n\n", e.Position, e.EventType, data)
		if got := frames[i].appendSSE(nil); !bytes.Equal(got, want) {
			t.Fatalf("event %d:\n got %q\nwant %q", e.Position, got, want)
		}
		if frames[i].agg != e.AggregateID || frames[i].typ != e.EventType || frames[i].pos != e.Position {
			t.Fatalf("frame %d: %+v", i, frames[i])
		}
	}
}
