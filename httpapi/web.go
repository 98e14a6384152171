package httpapi

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/go-chi/chi/v5"

	"github.com/chronicle-ledger/chronicle"
)

// The dashboard: plain HTML, CSS and JavaScript modules embedded in the binary and served
// on the API's port. The index is served at / and every other file under /ui/, paths no
// API route uses. The page refers to everything by relative URL, so it works behind a
// reverse proxy that mounts the node under a path prefix.

//go:embed web
var webFiles embed.FS

// webCSP is the Content-Security-Policy of every dashboard response: only this origin's
// scripts, styles and connections, no inline script or style, no plugins, no framing, and
// Trusted Types enforced so that no string can reach an HTML-parsing sink such as
// innerHTML.
const webCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; " +
	"connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'; " +
	"require-trusted-types-for 'script'; trusted-types 'none'"

// webAsset is one embedded file, ready to serve.
type webAsset struct {
	name   string
	body   []byte
	gz     []byte // gzip-compressed body, nil when it would not pay
	hash   string // content hash: the version in ?v= and the ETag
	ctype  string
	etag   string
	etagGz string
}

// webSite is the set of dashboard files.
type webSite struct {
	index  *webAsset
	assets map[string]*webAsset // by path under web/, e.g. "app.js"
}

var loadWebSite = sync.OnceValues(func() (*webSite, error) { return newWebSite(webFiles) })

// indexRef matches the index's references to assets, which get a ?v=<hash> so that they
// can be cached for good; modulepreload links keep the plain URL that the modules import
// each other by (revalidated with their ETag).
var (
	indexTag = regexp.MustCompile(`<(?:script|link)\b[^>]*>`)
	indexRef = regexp.MustCompile(`(src|href)="ui/([^"?#]+)"`)
)

func newWebSite(fsys fs.FS) (*webSite, error) {
	site := &webSite{assets: map[string]*webAsset{}}
	err := fs.WalkDir(fsys, "web", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "web/")
		site.assets[name] = newWebAsset(name, body)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("httpapi: load dashboard: %w", err)
	}
	idx, ok := site.assets["index.html"]
	if !ok {
		return nil, fmt.Errorf("httpapi: load dashboard: index.html is missing")
	}
	delete(site.assets, "index.html")
	var missing []string
	body := indexTag.ReplaceAllFunc(idx.body, func(tag []byte) []byte {
		preload := bytes.Contains(tag, []byte(`rel="modulepreload"`))
		return indexRef.ReplaceAllFunc(tag, func(m []byte) []byte {
			sub := indexRef.FindSubmatch(m)
			a, ok := site.assets[string(sub[2])]
			if !ok {
				missing = append(missing, string(sub[2]))
				return m
			}
			if preload {
				return m
			}
			return []byte(fmt.Sprintf(`%s="ui/%s?v=%s"`, sub[1], sub[2], a.hash))
		})
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("httpapi: load dashboard: index.html refers to missing files %v", missing)
	}
	site.index = newWebAsset("index.html", body)
	return site, nil
}

func newWebAsset(name string, body []byte) *webAsset {
	sum := sha256.Sum256(body)
	a := &webAsset{name: name, body: body, hash: hex.EncodeToString(sum[:8]), ctype: webContentType(name)}
	a.etag = `"` + a.hash + `"`
	if strings.HasPrefix(a.ctype, "text/") || strings.Contains(a.ctype, "svg") || strings.Contains(a.ctype, "json") {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		_, _ = zw.Write(body)
		_ = zw.Close()
		if buf.Len() < len(body)*9/10 {
			a.gz = buf.Bytes()
			a.etagGz = `"` + a.hash + `-gz"`
		}
	}
	return a
}

func webContentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8"
	case ".json":
		return "application/json"
	case ".svg":
		return "image/svg+xml"
	case ".png":
		return "image/png"
	case ".ico":
		return "image/x-icon"
	case ".woff2":
		return "font/woff2"
	default: // LICENSE, VERSION
		return "text/plain; charset=utf-8"
	}
}

// mountWeb serves the dashboard at / and its files under /ui/.
func (a *API) mountWeb(r chi.Router) {
	site, err := loadWebSite()
	if err != nil {
		a.log.Error("dashboard unavailable", "err", err)
		return
	}
	index := func(w http.ResponseWriter, r *http.Request) { site.serve(w, r, site.index, "no-cache") }
	asset := func(w http.ResponseWriter, r *http.Request) {
		f, ok := site.assets[chi.URLParam(r, "*")]
		if !ok {
			writeError(w, chronicle.Errorf(chronicle.KindNotFound, chronicle.CodeNotFound, "no dashboard file %s", r.URL.Path))
			return
		}
		cache := "no-cache" // revalidate: 304 while the ETag matches
		if r.URL.Query().Get("v") == f.hash {
			cache = "public, max-age=31536000, immutable" // the URL names this exact content
		}
		site.serve(w, r, f, cache)
	}
	r.Get("/", index)
	r.Head("/", index)
	r.Get("/ui/*", asset)
	r.Head("/ui/*", asset)
}

func (s *webSite) serve(w http.ResponseWriter, r *http.Request, f *webAsset, cacheControl string) {
	h := w.Header()
	h.Set("Content-Security-Policy", webCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", cacheControl)
	h.Add("Vary", "Accept-Encoding")
	gz := f.gz != nil && acceptsGzip(r)
	etag := f.etag
	if gz {
		etag = f.etagGz
	}
	h.Set("ETag", etag)
	if etagMatches(r.Header.Get("If-None-Match"), f) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := f.body
	if gz {
		h.Set("Content-Encoding", "gzip")
		body = f.gz
	}
	h.Set("Content-Type", f.ctype)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// etagMatches implements If-None-Match's weak comparison against either encoding's tag.
func etagMatches(header string, f *webAsset) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == f.etag || (f.etagGz != "" && t == f.etagGz) {
			return true
		}
	}
	return false
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") {
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}
