package deploy_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/chronicle-ledger/chronicle/deploy"
)

// TestPromtoolCheckConfig runs Prometheus's own checker (Debian's prometheus package
// ships promtool) on deploy/prometheus/prometheus.yml: --syntax-only on the file as it
// is, and the full check (which also wants every credentials and CA file to exist) on a
// copy whose container paths under /token/ point at placeholder files. Without promtool
// it skips, unless CHRONICLE_REQUIRE_PROMTOOL=1 (CI installs it).
func TestPromtoolCheckConfig(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CHRONICLE_REQUIRE_PROMTOOL") == "1" {
			t.Fatal("promtool not on PATH and CHRONICLE_REQUIRE_PROMTOOL=1: apt-get install prometheus")
		}
		t.Skip("promtool not on PATH: skipping `promtool check config` (apt-get install prometheus; CHRONICLE_REQUIRE_PROMTOOL=1 makes this a failure)")
	}
	const file = "prometheus/prometheus.yml"
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	}
	run("check", "config", "--syntax-only", file)

	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.Mkdir(token, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"prometheus.token", "ca.crt"} {
		if err := os.WriteFile(filepath.Join(token, name), []byte("placeholder\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(string(data), "/token/prometheus.token") {
		t.Fatal("prometheus.yml no longer reads /token/prometheus.token: update this test's placeholders")
	}
	copyFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(copyFile, []byte(strings.ReplaceAll(string(data), "/token/", token+"/")), 0o644); err != nil {
		t.Fatal(err)
	}
	run("check", "config", copyFile)
}

// TestGrafanaFiles: the dashboards parse, name the provisioned datasource, and every
// panel but a row has PromQL targets; the provisioning files parse.
func TestGrafanaFiles(t *testing.T) {
	var ds struct {
		Datasources []struct {
			UID, Type string
		} `yaml:"datasources"`
	}
	b, err := fs.ReadFile(deploy.Files(), "grafana/provisioning/datasources/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &ds); err != nil || len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" {
		t.Fatalf("datasources: %v %+v", err, ds)
	}
	uid := ds.Datasources[0].UID
	dashboards, err := fs.Glob(deploy.Files(), "grafana/dashboards/*.json")
	if err != nil || len(dashboards) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	for _, name := range dashboards {
		b, err := fs.ReadFile(deploy.Files(), name)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			UID    string `json:"uid"`
			Title  string `json:"title"`
			Panels []struct {
				Type       string `json:"type"`
				Title      string `json:"title"`
				Datasource struct {
					UID string `json:"uid"`
				} `json:"datasource"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
			t.Fatalf("%s: uid %q, title %q, %d panels", name, d.UID, d.Title, len(d.Panels))
		}
		for _, p := range d.Panels {
			if p.Type == "row" {
				continue
			}
			if p.Datasource.UID != uid {
				t.Errorf("%s: panel %q: datasource %q, want the provisioned %q", name, p.Title, p.Datasource.UID, uid)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", name, p.Title)
			}
			for _, q := range p.Targets {
				if strings.Count(q.Expr, "(") != strings.Count(q.Expr, ")") || strings.Count(q.Expr, "{") != strings.Count(q.Expr, "}") {
					t.Errorf("%s: panel %q: unbalanced %q", name, p.Title, q.Expr)
				}
			}
		}
	}
}
