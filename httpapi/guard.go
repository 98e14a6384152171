package httpapi

import (
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/chronicle-ledger/chronicle"
)

// Browser safety. A web page the user has open can send requests to a node without the
// node's consent: a form or a fetch with a "simple" content type (text/plain,
// application/x-www-form-urlencoded, multipart/form-data) needs no CORS preflight, so
// the request is executed even though the page cannot read the answer; and a page whose
// DNS name rebinds to a loopback address is same-origin with the node. The guards below
// refuse both before any body is read:
//
//   - hostGuard: a Host header naming none of the allowed hosts is refused (421
//     forbidden_host) on every route but /health, which stops DNS rebinding.
//   - browserGuard: a state-changing request (POST, PUT, PATCH, DELETE) carrying an
//     Origin that is neither the node's own nor an allowed CORS origin is refused (403
//     forbidden_origin), and one whose body is not application/json is refused (415
//     unsupported_media_type), which forces a cross-origin browser through a preflight.

// stateChanging reports whether a method may change state.
func stateChanging(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	default:
		return true
	}
}

// hostPolicy decides which Host headers are accepted.
type hostPolicy struct {
	// any accepts every host (no policy configured).
	any bool
	// names are host names accepted on any port; hostPorts exact host:port pairs.
	names, hostPorts map[string]bool
}

func newHostPolicy(allowed []string) hostPolicy {
	if len(allowed) == 0 {
		return hostPolicy{any: true}
	}
	// Loopback names are accepted wherever a policy applies: a browser sends such a Host
	// only for a page served from this machine's loopback itself, never for a page whose
	// DNS name rebinds to it.
	p := hostPolicy{names: map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true}, hostPorts: map[string]bool{}}
	for _, h := range allowed {
		h = normalizeHost(h)
		if h == "" {
			continue
		}
		if host, port, err := net.SplitHostPort(h); err == nil && port != "" {
			p.hostPorts[net.JoinHostPort(host, port)] = true
			continue
		}
		p.names[strings.Trim(h, "[]")] = true
	}
	return p
}

// normalizeHost lower-cases a host[:port] and drops a trailing dot of the name.
func normalizeHost(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	if host, port, err := net.SplitHostPort(h); err == nil {
		return net.JoinHostPort(strings.TrimSuffix(host, "."), port)
	}
	return strings.TrimSuffix(h, ".")
}

func (p hostPolicy) allows(hostHeader string) bool {
	if p.any {
		return true
	}
	h := normalizeHost(hostHeader)
	if h == "" {
		return false
	}
	host := h
	if hh, port, err := net.SplitHostPort(h); err == nil {
		if p.hostPorts[net.JoinHostPort(hh, port)] {
			return true
		}
		host = hh
	}
	return p.names[strings.Trim(host, "[]")]
}

// hostGuard refuses requests whose Host this node does not answer to (DNS rebinding);
// /health stays open for load balancers and probes that address the node by any name.
func (a *API) hostGuard(next http.Handler) http.Handler {
	policy := newHostPolicy(a.cfg.AllowedHosts)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !policy.allows(r.Host) && r.URL.Path != "/health" {
			writeErrorStatus(w, http.StatusMisdirectedRequest, chronicle.CodeForbiddenHost,
				"host "+strconv.Quote(r.Host)+" is not served by this node; allow it with --allowed-hosts")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// browserGuard refuses state-changing requests from foreign browser origins and those
// whose body is not JSON, before the body is read.
func (a *API) browserGuard(next http.Handler) http.Handler {
	anyOrigin, allowed := corsPolicy(a.cfg.CORSOrigins)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !stateChanging(r.Method) {
			next.ServeHTTP(w, r)
			return
		}
		if origins, ok := r.Header["Origin"]; ok {
			origin := ""
			if len(origins) > 0 {
				origin = origins[0]
			}
			if len(origins) != 1 || !originAllowed(origin, r.Host, anyOrigin, allowed) {
				writeErrorStatus(w, http.StatusForbidden, chronicle.CodeForbiddenOrigin,
					"origin "+strconv.Quote(origin)+" may not change state on this node; allow it with --cors-origin")
				return
			}
		}
		if msg, ok := jsonBody(r); !ok {
			writeErrorStatus(w, http.StatusUnsupportedMediaType, chronicle.CodeUnsupportedMediaType, msg)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// corsPolicy reads --cors-origin for originAllowed: any origin ("*"), or the set given.
func corsPolicy(origins []string) (anyOrigin bool, allowed map[string]bool) {
	allowed = map[string]bool{}
	for _, o := range origins {
		if o == "*" {
			anyOrigin = true
		}
		allowed[strings.ToLower(strings.TrimRight(o, "/"))] = true
	}
	return anyOrigin, allowed
}

// originAllowed reports whether a browser origin may change state: the node's own origin
// (the dashboard; the Host guard has vouched for the host), a configured CORS origin, or
// any origin with "*". The opaque origin "null" (sandboxed frames, file:) never is.
func originAllowed(origin, host string, anyOrigin bool, allowed map[string]bool) bool {
	if origin == "" || origin == "null" {
		return false
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return false
	}
	if normalizeHost(u.Host) == normalizeHost(host) {
		return true
	}
	return anyOrigin || allowed[strings.ToLower(strings.TrimRight(origin, "/"))]
}

// jsonBody checks a state-changing request's Content-Type: application/json (with any
// parameters, case-insensitive) is required, except on a DELETE without a body, which a
// browser cannot send cross-origin without a preflight and which carries nothing to type.
func jsonBody(r *http.Request) (string, bool) {
	ct := r.Header.Get("Content-Type")
	if r.Method == http.MethodDelete && ct == "" && r.ContentLength == 0 {
		return "", true
	}
	if ct == "" {
		return "send the request body as JSON with Content-Type: application/json", false
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return "content type " + strconv.Quote(ct) + " is not accepted; send JSON with Content-Type: application/json", false
	}
	return "", true
}
