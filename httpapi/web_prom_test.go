package httpapi_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPromParserNode runs the unit tests of the dashboard's Prometheus text parser
// (web/lib/prom.js; the tests are testdata/prom_test.mjs) with Node.js when it is
// installed. The browser tests exercise the same module in Chromium.
func TestPromParserNode(t *testing.T) {
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CHRONICLE_REQUIRE_NODE") == "1" {
			t.Fatal("CHRONICLE_REQUIRE_NODE=1 but node is not on PATH (apt-get install -y nodejs)")
		}
		t.Skip("JavaScript unit tests skipped: node is not on PATH (apt-get install -y nodejs; CHRONICLE_REQUIRE_NODE=1 makes this a failure)")
	}
	dir := t.TempDir()
	for src, dst := range map[string]string{"web/lib/prom.js": "prom.mjs", "testdata/prom_test.mjs": "prom_test.mjs"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(nodeBin, filepath.Join(dir, "prom_test.mjs")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "prom.js: ok") {
		t.Fatalf("node prom_test.mjs: %v\n%s", err, out)
	}
}
