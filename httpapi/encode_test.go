package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle/api"
)

// encodeStd is what writeJSON writes for v.
func encodeStd(t *testing.T, v any) []byte {
	t.Helper()
	w := httptest.NewRecorder()
	writeJSON(w, 200, v)
	return w.Body.Bytes()
}

var encodeStrings = []string{"", "plain", "0b1e-uuid-like", `q"uote`, `back\slash`, "<b>&amp;", "tab\tnl\n\x01", "Zoë 山田 🙂",
	"\u2028\u2029", "\xff\xfe bad utf8", "\x7f del"}

var encodeTimes = []time.Time{
	time.Date(2026, 11, 30, 11, 27, 14, 123456789, time.UTC),
	time.Date(2026, 11, 30, 11, 27, 14, 0, time.UTC),
	time.Date(2026, 11, 30, 11, 27, 14, 120000000, time.FixedZone("x", 5*3600+30*60)),
	time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("neg", -8*3600)),
	time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("odd", 17*60+30)),
	time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("far", 25*3600)),
	time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
	time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
	time.Now(),
	{},
}

func encodeResults() []api.CommandResult {
	var out []api.CommandResult
	for i, s := range encodeStrings {
		for j, tm := range encodeTimes {
			r := api.CommandResult{Success: (i+j)%2 == 0, EventID: s, TransferID: encodeStrings[(i+1)%len(encodeStrings)],
				AccountID: encodeStrings[(i+j)%len(encodeStrings)], Position: uint64(i * j * 1000003), CommittedAt: tm,
				Replayed: j%3 == 0, Status: 201}
			switch j % 3 {
			case 0:
				r.Events = []api.EventRef{}
			case 1:
				r.Events = []api.EventRef{{EventID: s, Type: "transfer_debited", AggregateID: "a", Position: 1},
					{EventID: "e2", Type: s, AggregateID: s, Position: 1<<64 - 1}}
			}
			out = append(out, r)
		}
	}
	return out
}

// The hand-written responses are byte for byte what encoding/json writes.
func TestEncodeCommandResultMatchesJSON(t *testing.T) {
	for _, r := range encodeResults() {
		want := encodeStd(t, r)
		w := httptest.NewRecorder()
		writeCommandResult(w, 201, &r)
		if !bytes.Equal(w.Body.Bytes(), want) {
			t.Fatalf("result %+v:\ngot  %s\nwant %s", r, w.Body.Bytes(), want)
		}
		if w.Code != 201 || w.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("status %d, headers %v", w.Code, w.Header())
		}
	}
}

func TestEncodeBatchResponseMatchesJSON(t *testing.T) {
	results := encodeResults()
	var batch []api.BatchResult
	for i, r := range results {
		br := api.BatchResult{CommandResult: r}
		if i%4 == 1 {
			br.Error, br.Code, br.Field = encodeStrings[i%len(encodeStrings)], "invalid_amount", encodeStrings[(i/4)%len(encodeStrings)]
		}
		batch = append(batch, br)
	}
	cases := []api.BatchResponse{{}, {Results: []api.BatchResult{}}, {Results: batch[:1], Position: 7}}
	// Each result alone (one with an unusual time sends all to encoding/json), and the
	// results with UTC times together.
	for _, br := range batch {
		cases = append(cases, api.BatchResponse{Results: []api.BatchResult{br}, Position: br.Position})
	}
	var utc []api.BatchResult
	for _, br := range batch {
		if br.CommittedAt.Location() == time.UTC && br.CommittedAt.Year() == 2026 {
			utc = append(utc, br)
		}
	}
	cases = append(cases, api.BatchResponse{Results: utc, Position: 42})
	for _, c := range cases {
		want := encodeStd(t, c)
		w := httptest.NewRecorder()
		writeBatchResponse(w, 200, &c)
		if !bytes.Equal(w.Body.Bytes(), want) {
			t.Fatalf("batch:\ngot  %s\nwant %s", w.Body.Bytes(), want)
		}
	}
	if len(utc) < 10 || !strings.Contains(string(encodeStd(t, api.BatchResponse{Results: utc})), `"error"`) {
		t.Fatalf("the batch case covers too little: %d results", len(utc))
	}
}

// FuzzEncodeString: appendJSONString quotes any string as encoding/json does.
func FuzzEncodeString(f *testing.F) {
	for _, s := range encodeStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	})
}
