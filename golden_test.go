package chronicle_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/golden"
)

// TestGolden replays the committed fixture log (testdata/golden, written once by
// internal/goldengen) and fails on any byte that the current code reads or renders
// differently: the entry and batch encodings, every event's canonical encoding, stored
// form, hash and JSON, and every command's outcome. A dependency bump or a careless edit
// that would change a hash or an outcome on replay fails here. There is deliberately no
// flag to rewrite the files.
func TestGolden(t *testing.T) {
	dir := filepath.Join("testdata", "golden")
	want := map[string][]byte{}
	for _, name := range golden.Files {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		want[name] = b
	}
	entries, err := golden.ReadEntries(want["entries.bin"])
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < 50 {
		t.Fatalf("fixture holds %d entries; it should hold the whole script", len(entries))
	}
	var batches []chronicle.Batch
	for i, entry := range entries {
		kind, payload, err := chronicle.DecodeEntry(entry)
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if kind != chronicle.EntryCommandBatch {
			t.Fatalf("entry %d: kind %v", i, kind)
		}
		var b chronicle.Batch
		if err := b.UnmarshalBinary(payload); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		batches = append(batches, b)
	}
	got, err := golden.Render(batches)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range golden.Files {
		if !bytes.Equal(got[name], want[name]) {
			t.Errorf("%s differs from the golden file: %s", name, firstDifference(want[name], got[name]))
		}
	}

	// The fixture covers what it claims to: every event type, several exponents,
	// refusals, replays and key reuse.
	st := chronicle.NewMemState()
	var refused, replayed int
	for _, b := range batches {
		res, err := st.Execute(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				refused++
			}
			if r.Replayed {
				replayed++
			}
		}
	}
	types, exps := map[string]int{}, map[int]bool{}
	for _, e := range st.Log {
		types[e.EventType]++
		cur, err := chronicle.LookupCurrency(e.Data.Currency)
		if err != nil {
			t.Fatal(err)
		}
		exps[cur.Exponent] = true
	}
	if len(st.Log) < 300 || len(types) < 3 || len(exps) < 4 || refused < 10 || replayed < 3 {
		t.Fatalf("fixture is thin: %d events, types %v, exponents %v, %d refused, %d replayed", len(st.Log), types, exps, refused, replayed)
	}
	// And replaying its events alone rebuilds the same ledger.
	r := chronicle.NewReplayer()
	for _, e := range st.Log {
		if err := r.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	if r.State.Head != st.Head {
		t.Fatalf("replayed head %+v, applied head %+v", r.State.Head, st.Head)
	}
}

// firstDifference describes where two files first differ, by line.
func firstDifference(want, got []byte) string {
	wl, gl := bytes.Split(want, []byte("\n")), bytes.Split(got, []byte("\n"))
	for i := 0; i < max(len(wl), len(gl)); i++ {
		var w, g []byte
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if !bytes.Equal(w, g) {
			return fmt.Sprintf("line %d:\n want %.300q\n got  %.300q", i+1, w, g)
		}
	}
	return fmt.Sprintf("%d bytes, want %d", len(got), len(want))
}
