package httpapi

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// webServer serves an API whose dashboard routes need none of the node's parts.
func webServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(New(Config{}))
	t.Cleanup(srv.Close)
	return srv
}

func webGet(t *testing.T, url string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	// An explicit Accept-Encoding switches off the transport's transparent gzip.
	req.Header.Set("Accept-Encoding", "identity")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestWebIndex(t *testing.T) {
	srv := webServer(t)
	resp, body := webGet(t, srv.URL+"/", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET / = %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "object-src 'none'", "frame-ancestors 'none'", "require-trusted-types-for 'script'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("CSP %q allows inline script or eval", csp)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no X-Content-Type-Options: nosniff")
	}
	if resp.Header.Get("ETag") == "" || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("index: ETag %q, Cache-Control %q; want an ETag and no-cache", resp.Header.Get("ETag"), resp.Header.Get("Cache-Control"))
	}
	html := string(body)
	if !strings.Contains(html, `<main id="main"`) || !strings.Contains(html, `type="module"`) {
		t.Error("index lacks the main landmark or the module script")
	}
	// No inline script: every <script> has a src, and no inline event handler or style.
	for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAllString(html, -1) {
		if !strings.Contains(m, ` src="`) {
			t.Errorf("inline script %s", m)
		}
	}
	if regexp.MustCompile(`(?i)\son[a-z]+="|\sstyle="|<style`).MatchString(html) {
		t.Error("index has inline event handlers or styles, which the CSP forbids")
	}

	// Landmarks, live regions, and a label for every field.
	for _, want := range []string{`<header`, `<nav class="mainnav" aria-label="Main"`, `<main id="main"`, `<footer`, `aria-live="polite"`, `class="skip-link"`, `lang="en"`} {
		if !strings.Contains(html, want) {
			t.Errorf("index lacks %s", want)
		}
	}
	for _, m := range regexp.MustCompile(`<(?:input|select)[^>]*\sid="([^"]+)"`).FindAllStringSubmatch(html, -1) {
		if !strings.Contains(html, `<label for="`+m[1]+`"`) {
			t.Errorf("field #%s has no label", m[1])
		}
	}

	// HEAD answers the same headers without a body.
	req, _ := http.NewRequest(http.MethodHead, srv.URL+"/", nil)
	hr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	hr.Body.Close()
	if hr.StatusCode != http.StatusOK || hr.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("HEAD / = %d, CSP %q", hr.StatusCode, hr.Header.Get("Content-Security-Policy"))
	}
}

// TestWebRelativeURLs: the page works behind a path prefix only if it never names an
// absolute path or another origin.
func TestWebRelativeURLs(t *testing.T) {
	srv := webServer(t)
	_, body := webGet(t, srv.URL+"/", nil)
	refs := regexp.MustCompile(`\s(?:src|href|action)="([^"]*)"`).FindAllStringSubmatch(string(body), -1)
	if len(refs) < 4 {
		t.Fatalf("found only %d references in the index", len(refs))
	}
	for _, m := range refs {
		u := m[1]
		if strings.HasPrefix(u, "/") || strings.Contains(u, "//") || strings.Contains(u, ":") {
			t.Errorf("index refers to %q: not a relative URL", u)
		}
	}
	// The JavaScript too: fetches, EventSource and imports use relative URLs.
	abs := regexp.MustCompile(`(?:fetch|EventSource|import)\s*\(\s*['"\x60](/|https?:)|from\s+['"](/|https?:)`)
	for name, a := range mustSite(t).assets {
		if strings.HasSuffix(name, ".js") && !strings.HasPrefix(name, "vendor/") && abs.Match(a.body) {
			t.Errorf("%s uses an absolute URL", name)
		}
	}
}

func mustSite(t *testing.T) *webSite {
	t.Helper()
	site, err := loadWebSite()
	if err != nil {
		t.Fatal(err)
	}
	return site
}

func TestWebAssets(t *testing.T) {
	srv := webServer(t)
	_, index := webGet(t, srv.URL+"/", nil)
	cases := map[string]string{
		"app.js":                     "text/javascript; charset=utf-8",
		"app.css":                    "text/css; charset=utf-8",
		"views/events.js":            "text/javascript; charset=utf-8",
		"vendor/uplot/uPlot.esm.js":  "text/javascript; charset=utf-8",
		"vendor/uplot/uPlot.min.css": "text/css; charset=utf-8",
		"favicon.svg":                "image/svg+xml",
		"vendor/uplot/LICENSE":       "text/plain; charset=utf-8",
	}
	for name, ctype := range cases {
		url := srv.URL + "/ui/" + name
		resp, body := webGet(t, url, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d", name, resp.StatusCode)
			continue
		}
		if got := resp.Header.Get("Content-Type"); got != ctype {
			t.Errorf("%s: Content-Type %q, want %q", name, got, ctype)
		}
		if resp.Header.Get("Content-Security-Policy") == "" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: missing CSP or nosniff", name)
		}
		etag := resp.Header.Get("ETag")
		if !regexp.MustCompile(`^"[0-9a-f]{16}"$`).MatchString(etag) {
			t.Errorf("%s: ETag %q", name, etag)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("%s without ?v: Cache-Control %q, want no-cache (revalidate by ETag)", name, cc)
		}
		if len(body) == 0 {
			t.Errorf("%s: empty body", name)
		}
		// Revalidation: the same ETag answers 304 with no body.
		nm, nb := webGet(t, url, map[string]string{"If-None-Match": etag})
		if nm.StatusCode != http.StatusNotModified || len(nb) != 0 {
			t.Errorf("%s with If-None-Match %s = %d (%d bytes), want 304", name, etag, nm.StatusCode, len(nb))
		}
		if nm.Header.Get("ETag") != etag {
			t.Errorf("%s: 304 carries ETag %q, want %q", name, nm.Header.Get("ETag"), etag)
		}
		// A stale ETag gets the file.
		if st, _ := webGet(t, url, map[string]string{"If-None-Match": `"0000000000000000"`}); st.StatusCode != http.StatusOK {
			t.Errorf("%s with a stale ETag = %d, want 200", name, st.StatusCode)
		}
	}

	// The index names its assets with their content hash; such a URL is cached for good.
	m := regexp.MustCompile(`src="(ui/app\.js\?v=([0-9a-f]{16}))"`).FindStringSubmatch(string(index))
	if m == nil {
		t.Fatal("index does not refer to ui/app.js?v=<hash>")
	}
	resp, _ := webGet(t, srv.URL+"/"+m[1], nil)
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") || resp.Header.Get("ETag") != `"`+m[2]+`"` {
		t.Errorf("versioned asset: Cache-Control %q, ETag %q", cc, resp.Header.Get("ETag"))
	}

	// Unknown files are JSON 404s like any unknown route; API routes are untouched.
	if resp, body := webGet(t, srv.URL+"/ui/nope.js", nil); resp.StatusCode != http.StatusNotFound || !bytes.Contains(body, []byte(`"code":"not_found"`)) {
		t.Errorf("GET /ui/nope.js = %d %s", resp.StatusCode, body)
	}
	if resp, _ := webGet(t, srv.URL+"/ui/index.html", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /ui/index.html = %d, want 404 (the index lives at /)", resp.StatusCode)
	}
	if resp, _ := webGet(t, srv.URL+"/nope", nil); resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("GET /nope = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestWebGzip(t *testing.T) {
	srv := webServer(t)
	url := srv.URL + "/ui/vendor/uplot/uPlot.esm.js"
	plain, want := webGet(t, url, nil)
	resp, body := webGet(t, url, map[string]string{"Accept-Encoding": "gzip, deflate, br"})
	if resp.Header.Get("Content-Encoding") != "gzip" || !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
		t.Fatalf("Content-Encoding %q, Vary %q", resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"))
	}
	if len(body) >= len(want)/2 {
		t.Errorf("gzip body %d bytes for %d plain", len(body), len(want))
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("gzip body does not decode to the file (err %v)", err)
	}
	gzTag := resp.Header.Get("ETag")
	if gzTag == plain.Header.Get("ETag") {
		t.Error("the gzip and identity encodings share an ETag")
	}
	if nm, _ := webGet(t, url, map[string]string{"Accept-Encoding": "gzip", "If-None-Match": gzTag}); nm.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match with the gzip ETag = %d", nm.StatusCode)
	}
	if r, _ := webGet(t, url, map[string]string{"Accept-Encoding": "gzip;q=0"}); r.Header.Get("Content-Encoding") != "" {
		t.Error("gzip;q=0 still got gzip")
	}
}

// TestWebNoHTMLSinks keeps the dashboard's own code away from HTML-parsing sinks: all
// data reaches the page through textContent and createElement.
func TestWebNoHTMLSinks(t *testing.T) {
	sinks := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(`)
	for name, a := range mustSite(t).assets {
		if strings.HasSuffix(name, ".js") && !strings.HasPrefix(name, "vendor/") {
			if loc := sinks.FindIndex(a.body); loc != nil {
				t.Errorf("%s uses %s", name, a.body[loc[0]:loc[1]])
			}
		}
	}
}
