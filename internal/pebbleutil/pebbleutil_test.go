package pebbleutil

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

func TestPrefixEnd(t *testing.T) {
	for _, c := range []struct{ in, want []byte }{
		{[]byte("a"), []byte("b")},
		{[]byte{'s', 'x', 0}, []byte{'s', 'x', 1}},
		{[]byte{'a', 0xff}, []byte{'b'}},
		{[]byte{0xff, 0xff}, nil},
		{nil, nil},
	} {
		in := bytes.Clone(c.in)
		if got := PrefixEnd(in); !bytes.Equal(got, c.want) {
			t.Errorf("PrefixEnd(%x) = %x, want %x", c.in, got, c.want)
		}
		if !bytes.Equal(in, c.in) {
			t.Errorf("PrefixEnd modified its argument: %x, was %x", in, c.in)
		}
	}
}

func TestGetHelpers(t *testing.T) {
	db, err := pebble.Open(t.TempDir(), &pebble.Options{FormatMajorVersion: FormatMajorVersion,
		Logger: Logger(slog.New(slog.DiscardHandler), "pebble-test")})
	if err != nil {
		t.Fatalf("open pebble: %v", err)
	}
	defer db.Close()
	for k, v := range map[string][]byte{"empty": {}, "json": []byte(`{"n":7}`), "bad-json": []byte("{"),
		"u64": U64(1 << 40), "short": {1, 2, 3}} {
		if err := db.Set([]byte(k), v, pebble.NoSync); err != nil {
			t.Fatalf("Set: %v", err)
		}
	}

	if v, ok, err := Get(db, []byte("empty")); err != nil || !ok || v == nil || len(v) != 0 {
		t.Errorf("Get(empty) = %v, %v, %v; want a non-nil empty value", v, ok, err)
	}
	v, ok, err := Get(db, []byte("json"))
	if err != nil || !ok || string(v) != `{"n":7}` {
		t.Errorf("Get(json) = %q, %v, %v", v, ok, err)
	}
	if v, ok, err := Get(db, []byte("missing")); err != nil || ok || v != nil {
		t.Errorf("Get(missing) = %v, %v, %v; want absent", v, ok, err)
	}

	var x struct{ N int }
	if ok, err := GetJSON(db, []byte("json"), &x); err != nil || !ok || x.N != 7 {
		t.Errorf("GetJSON(json) = %v, %v, %+v", ok, err, x)
	}
	if ok, err := GetJSON(db, []byte("missing"), &x); err != nil || ok {
		t.Errorf("GetJSON(missing) = %v, %v; want absent", ok, err)
	}
	if _, err := GetJSON(db, []byte("bad-json"), &x); err == nil {
		t.Errorf("GetJSON(bad-json): no error")
	}

	if n, ok, err := GetUint64(db, []byte("u64")); err != nil || !ok || n != 1<<40 {
		t.Errorf("GetUint64(u64) = %d, %v, %v", n, ok, err)
	}
	if n, ok, err := GetUint64(db, []byte("missing")); err != nil || ok || n != 0 {
		t.Errorf("GetUint64(missing) = %d, %v, %v; want absent", n, ok, err)
	}
	if _, _, err := GetUint64(db, []byte("short")); err == nil {
		t.Errorf("GetUint64(short): no error")
	}
}

func TestU64Orders(t *testing.T) {
	vals := []uint64{0, 1, 255, 256, 1 << 32, 1<<64 - 1}
	for i := 1; i < len(vals); i++ {
		if bytes.Compare(U64(vals[i-1]), U64(vals[i])) >= 0 {
			t.Errorf("U64(%d) does not sort before U64(%d)", vals[i-1], vals[i])
		}
	}
	if len(U64(0)) != 8 {
		t.Errorf("U64 is %d bytes, want 8", len(U64(0)))
	}
}

// TestFormatMajorVersionPinned: a new database is created at the pinned format, and the
// pin names the same format as when it was chosen (Pebble numbers its formats; a Pebble
// upgrade that renumbered them, or an edit of the pin, fails here).
func TestFormatMajorVersionPinned(t *testing.T) {
	if uint64(FormatMajorVersion) != 24 || FormatMajorVersion.String() != "024" {
		t.Fatalf("pinned Pebble format is %d (%s); data directories of this release use 24", uint64(FormatMajorVersion), FormatMajorVersion)
	}
	db, err := pebble.Open(t.TempDir(), &pebble.Options{FormatMajorVersion: FormatMajorVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := db.FormatMajorVersion(); got != FormatMajorVersion {
		t.Fatalf("new database at format %s, want %s", got, FormatMajorVersion)
	}
}

// With a Fatal handler, Pebble's Fatalf reports the error, never panics and never
// returns to Pebble (which would carry on as if the failed operation succeeded): the
// goroutine parks until Release and then ends.
func TestLoggerWithFatal(t *testing.T) {
	reported := make(chan error, 1)
	f := NewFatal(func(err error) { reported <- err })
	lg := LoggerWithFatal(slog.New(slog.DiscardHandler), "state", f)
	returned := make(chan bool, 1)
	ended := make(chan struct{})
	go func() {
		defer close(ended) // deferred calls run when the goroutine ends
		lg.Fatalf("pebble: fatal commit error: %s", "no space left on device")
		returned <- true
	}()
	err := <-reported
	if err == nil || !strings.Contains(err.Error(), "no space left on device") || f.Err() == nil {
		t.Fatalf("reported %v, Err %v", err, f.Err())
	}
	select {
	case <-ended:
		t.Fatal("Fatalf returned before Release")
	default:
	}
	f.Release()
	<-ended
	select {
	case <-returned:
		t.Fatal("Fatalf returned to its caller")
	default:
	}
}

// TestFatalReport records the first error and tells onFatal, without parking the caller
// (which holds a Pebble lock in the events-sync hook).
func TestFatalReport(t *testing.T) {
	var told []error
	f := NewFatal(func(err error) { told = append(told, err) })
	first, second := errors.New("first"), errors.New("second")
	f.Report(first) // returns: a parking Report would hang the test here
	f.Report(second)
	if f.Err() != first || len(told) != 2 || told[0] != first {
		t.Fatalf("Err %v, told %v", f.Err(), told)
	}
}
