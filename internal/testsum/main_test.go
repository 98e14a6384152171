package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSummaryOfAStream: the summary of a hand-written event stream prints the failed
// test's output and the package lines, hides passing tests' output, and lists skipped
// tests by reason, subtests and parallel markers included.
func TestSummaryOfAStream(t *testing.T) {
	stream := `{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestOK"}
{"Action":"output","Package":"p","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"output","Package":"p","Test":"TestOK","Output":"    ok_test.go:5: chatty log line\n"}
{"Action":"output","Package":"p","Test":"TestOK","Output":"--- PASS: TestOK (0.00s)\n"}
{"Action":"pass","Package":"p","Test":"TestOK"}
{"Action":"output","Package":"p","Test":"TestBrowser","Output":"=== RUN   TestBrowser\n"}
{"Action":"output","Package":"p","Test":"TestBrowser","Output":"=== PAUSE TestBrowser\n"}
{"Action":"output","Package":"p","Test":"TestBrowser","Output":"=== CONT  TestBrowser\n"}
{"Action":"output","Package":"p","Test":"TestBrowser","Output":"    web_test.go:46: browser tests skipped: no chromium\n"}
{"Action":"output","Package":"p","Test":"TestBrowser","Output":"--- SKIP: TestBrowser (0.00s)\n"}
{"Action":"skip","Package":"p","Test":"TestBrowser"}
{"Action":"output","Package":"p","Test":"TestOther/sub","Output":"    other_test.go:9: browser tests skipped: no chromium\n"}
{"Action":"output","Package":"p","Test":"TestOther/sub","Output":"    --- SKIP: TestOther/sub (0.00s)\n"}
{"Action":"skip","Package":"p","Test":"TestOther/sub"}
{"Action":"output","Package":"p","Test":"TestQuiet","Output":"--- SKIP: TestQuiet (0.00s)\n"}
{"Action":"skip","Package":"p","Test":"TestQuiet"}
{"Action":"output","Package":"p","Test":"TestBad","Output":"    bad_test.go:7: balance 3, want 4\n"}
{"Action":"output","Package":"p","Test":"TestBad","Output":"--- FAIL: TestBad (0.01s)\n"}
{"Action":"fail","Package":"p","Test":"TestBad"}
{"Action":"output","Package":"p","Output":"FAIL\n"}
{"Action":"output","Package":"p","Output":"FAIL\tp\t0.02s\n"}
{"Action":"fail","Package":"p"}
{"Action":"output","Package":"q","Output":"PASS\n"}
{"Action":"output","Package":"q","Output":"ok  \tq\t0.01s\n"}
{"Action":"pass","Package":"q"}
not json from a test binary
`
	var out bytes.Buffer
	s := newSummary(&out)
	if err := s.read(strings.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	s.finish()
	got := out.String()
	for _, want := range []string{
		"    bad_test.go:7: balance 3, want 4\n--- FAIL: TestBad (0.01s)\n",
		"FAIL\tp\t0.02s\n",
		"ok  \tq\t0.01s\n",
		"not json from a test binary\n",
		"SKIPPED: 3 tests did not run",
		"* browser tests skipped: no chromium\n    p TestBrowser\n    p TestOther/sub\n",
		"* (no reason given)\n    p TestQuiet\n",
		"FAILED: 1 test ====================\n    p TestBad\n",
		"FAIL (2 packages; 3 skipped tests)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the summary lacks %q:\n%s", want, got)
		}
	}
	for _, unwanted := range []string{"chatty log line", "=== RUN", "=== PAUSE", "PASS\n\n", "web_test.go:46"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("the summary shows %q:\n%s", unwanted, got)
		}
	}
	if s.failed != 1 {
		t.Errorf("failed = %d, want 1 (the package)", s.failed)
	}
}

// TestRunRealGoTest runs the real go test -json over a module with a passing, a
// skipping, a failing, a panicking and an uncompilable package: the exit status is not
// 0, every failure is shown, the skips are listed; with only the good package it is 0.
func TestRunRealGoTest(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":             "module example.com/m\n\ngo 1.26\n",
		"good/good_test.go":  "package good\n\nimport \"testing\"\n\nfunc TestGood(t *testing.T) { t.Log(\"hidden\") }\nfunc TestNeedsTool(t *testing.T) { t.Skip(\"shellcheck not installed (apt-get install shellcheck)\") }\n",
		"bad/bad_test.go":    "package bad\n\nimport \"testing\"\n\nfunc TestBad(t *testing.T) { t.Errorf(\"got %d, want %d\", 3, 4) }\n",
		"boom/boom_test.go":  "package boom\n\nimport \"testing\"\n\nfunc TestBoom(t *testing.T) { var m map[string]int; m[\"x\"] = 1 }\n",
		"broken/bro_test.go": "package broken\n\nimport \"testing\"\n\nfunc TestBroken(t *testing.T) { undefinedThing() }\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, goBin, dir, []string{"-count=1", "./..."}, &out, &errOut)
	got := out.String() + errOut.String()
	if code == 0 {
		t.Fatalf("exit 0 with failing packages:\n%s", got)
	}
	for _, want := range []string{
		"got 3, want 4", "--- FAIL: TestBad",
		"assignment to entry in nil map", // the panic's output
		"undefinedThing",                 // the build error
		"ok  \texample.com/m/good",
		"SKIPPED: 1 test did not run", "* shellcheck not installed (apt-get install shellcheck)\n    example.com/m/good TestNeedsTool",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "hidden") {
		t.Errorf("a passing test's log is shown:\n%s", got)
	}

	out.Reset()
	errOut.Reset()
	if code := run(ctx, goBin, dir, []string{"-count=1", "./good"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d with only a passing package:\n%s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "PASS (1 package; 1 skipped test)") {
		t.Errorf("summary of a passing run:\n%s", out.String())
	}
}
