// Command testsum runs `go test -json` with the arguments it is given and prints what a
// person needs from it: the package results and the output of failed tests, as go test
// would, then a SKIPPED block naming every skipped test with its reason (no chromium, no
// PostgreSQL, no shellcheck...) and how many, so that a green run that skipped half the
// suite says so. It exits non-zero when go test did or any test failed. make test uses it.
//
//	go build -o bin/testsum ./internal/testsum && bin/testsum -count=1 ./...
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"sort"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	os.Exit(run(ctx, goBin, "", os.Args[1:], os.Stdout, os.Stderr))
}

// run runs go test -json args in dir ("" for the current directory), summarising its
// output onto stdout; it returns the exit status: 0 only when go test exited 0 and no
// test failed.
func run(ctx context.Context, goBin, dir string, args []string, stdout, stderr io.Writer) int {
	cmd := exec.CommandContext(ctx, goBin, append([]string{"test", "-json"}, args...)...)
	cmd.Dir = dir
	cmd.Stderr = stderr // build errors before any JSON, and go's own complaints
	// Interrupted: let go test stop its test binaries itself, as at a terminal.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(stderr, "testsum:", err)
		return 2
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "testsum:", err)
		return 2
	}
	s := newSummary(stdout)
	readErr := s.read(pipe)
	waitErr := cmd.Wait()
	s.finish()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(waitErr, &ee):
		code = ee.ExitCode()
		if code <= 0 {
			code = 1 // killed by a signal
		}
	case waitErr != nil:
		fmt.Fprintln(stderr, "testsum: go test:", waitErr)
		code = 2
	}
	if readErr != nil {
		fmt.Fprintln(stderr, "testsum: reading go test's output:", readErr)
		code = max(code, 2)
	}
	if s.failed > 0 && code == 0 {
		code = 1
	}
	if code != 0 && s.failed == 0 {
		fmt.Fprintf(stdout, "FAIL: go test exited with status %d\n", code)
	}
	return code
}

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output and build-fail events
	Test       string
	Output     string
}

type testKey struct{ pkg, test string }

// Skipped is one skipped test and why.
type Skipped struct {
	Package, Test, Reason string
}

// summary turns the event stream into output.
type summary struct {
	w       io.Writer
	buf     map[testKey][]string // output of running tests
	skipped []Skipped
	// failed counts failed tests and packages (a package failing without a failed test:
	// a build failure, a panic outside tests, a timeout).
	failed      int
	failedTests []string
	pkgs        int
}

func newSummary(w io.Writer) *summary {
	return &summary{w: w, buf: map[testKey][]string{}}
}

// read consumes the stream; a line that is not JSON (a test binary writing to stdout
// behind test2json's back) is printed as it is.
func (s *summary) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintf(s.w, "%s\n", line)
			continue
		}
		s.handle(e)
	}
	return sc.Err()
}

var (
	fileLine   = regexp.MustCompile(`^\S+\.go:\d+: `)
	runMarkers = []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME"}
)

func isMarker(line string) bool {
	t := strings.TrimSpace(line)
	for _, m := range runMarkers {
		if strings.HasPrefix(t, m) {
			return true
		}
	}
	return false
}

func (s *summary) handle(e event) {
	switch e.Action {
	case "build-output":
		fmt.Fprint(s.w, e.Output)
		return
	case "build-fail":
		s.failed++
		return
	}
	if e.Test == "" {
		switch e.Action {
		case "output":
			if e.Output != "PASS\n" {
				fmt.Fprint(s.w, e.Output)
			}
		case "pass", "skip":
			s.pkgs++
		case "fail":
			s.pkgs++
			s.failed++
			// Tests still running when the package failed (a panic, a timeout): their
			// output is the only clue.
			var left []testKey
			for k := range s.buf {
				if k.pkg == e.Package {
					left = append(left, k)
				}
			}
			sort.Slice(left, func(i, j int) bool { return left[i].test < left[j].test })
			for _, k := range left {
				s.flush(k)
			}
		}
		return
	}
	k := testKey{e.Package, e.Test}
	switch e.Action {
	case "output":
		if !isMarker(e.Output) {
			s.buf[k] = append(s.buf[k], e.Output)
		}
	case "pass":
		delete(s.buf, k)
	case "skip":
		s.skipped = append(s.skipped, Skipped{Package: e.Package, Test: e.Test, Reason: skipReason(s.buf[k])})
		delete(s.buf, k)
	case "fail":
		s.failedTests = append(s.failedTests, e.Package+" "+e.Test)
		s.flush(k)
	}
}

// flush prints a test's output and forgets it.
func (s *summary) flush(k testKey) {
	for _, l := range s.buf[k] {
		fmt.Fprint(s.w, l)
	}
	delete(s.buf, k)
}

// skipReason is what a skipped test logged, without file:line prefixes and the
// --- SKIP line; "(no reason given)" when it logged nothing.
func skipReason(lines []string) string {
	var parts []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "--- SKIP") || isMarker(t) {
			continue
		}
		parts = append(parts, fileLine.ReplaceAllString(t, ""))
	}
	if len(parts) == 0 {
		return "(no reason given)"
	}
	r := strings.Join(parts, " ")
	if len(r) > 400 {
		r = r[:400] + "…"
	}
	return r
}

// finish prints the SKIPPED block, grouped by reason, and the failed tests again.
func (s *summary) finish() {
	if n := len(s.skipped); n > 0 {
		groups := map[string][]Skipped{}
		var reasons []string
		for _, sk := range s.skipped {
			if _, ok := groups[sk.Reason]; !ok {
				reasons = append(reasons, sk.Reason)
			}
			groups[sk.Reason] = append(groups[sk.Reason], sk)
		}
		sort.Strings(reasons)
		fmt.Fprintf(s.w, "\n==================== SKIPPED: %d test%s did not run ====================\n", n, plural(n))
		for _, r := range reasons {
			fmt.Fprintf(s.w, "* %s\n", r)
			for _, sk := range groups[r] {
				fmt.Fprintf(s.w, "    %s %s\n", sk.Package, sk.Test)
			}
		}
		fmt.Fprintf(s.w, "(README.md, Testing, says how to install what they need.)\n")
	}
	if len(s.failedTests) > 0 {
		fmt.Fprintf(s.w, "\n==================== FAILED: %d test%s ====================\n", len(s.failedTests), plural(len(s.failedTests)))
		for _, t := range s.failedTests {
			fmt.Fprintf(s.w, "    %s\n", t)
		}
	}
	switch {
	case s.failed > 0:
		fmt.Fprintf(s.w, "\nFAIL (%d package%s; %d skipped test%s)\n", s.pkgs, plural(s.pkgs), len(s.skipped), plural(len(s.skipped)))
	default:
		fmt.Fprintf(s.w, "\nPASS (%d package%s; %d skipped test%s)\n", s.pkgs, plural(s.pkgs), len(s.skipped), plural(len(s.skipped)))
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
