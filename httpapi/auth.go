package httpapi

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/chronicle-ledger/chronicle"
)

// Authentication. A request names its token as "Authorization: Bearer <secret>"; the
// node hashes the secret and finds the record in its copy of the token table, which it
// reloads from the store at most once a second (and at once after a token operation made
// here), so that a token created or revoked on another node counts everywhere within a
// second of reaching this node's state.
//
// Until the table holds a token, and unless Config.AuthRequired is set, every request is
// served as an anonymous admin: a loopback node (protected mode, see node) and the
// original system's scripts keep working. The first token ever created turns
// authentication on for good, on every node, because records are never deleted.

// Principal is who a request acts as.
type Principal struct {
	// Name is the token's name ("" for anonymous); it becomes each event's created_by.
	Name string
	Role chronicle.Role
}

type principalKey struct{}

// PrincipalFrom returns the principal an authenticated request acts as.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Timings of the token cache.
const (
	// tokenRefresh is how old the cached table may get before a request reloads it.
	tokenRefresh = time.Second
	// tokenMissReload bounds reloads caused by unknown tokens, so that a client sending
	// garbage cannot make every request read the store.
	tokenMissReload = 200 * time.Millisecond
	// tokenStaleMax is how long a failing store may leave the node on its last good copy
	// before requests are refused (503 unavailable) rather than judged on it.
	tokenStaleMax = 30 * time.Second
	// tokenLoadTimeout bounds one reload.
	tokenLoadTimeout = 2 * time.Second
)

// authenticator keeps the token table in memory and judges requests against it.
type authenticator struct {
	store    chronicle.TokenStore
	required bool
	log      *slog.Logger
	limit    rate.Limit
	burst    int

	mu       sync.RWMutex
	byHash   map[chronicle.TokenHash]chronicle.Token
	any      bool      // the table holds a record: authentication is on for good
	loaded   time.Time // last successful load
	tried    time.Time // last load attempt
	limiters map[string]*rate.Limiter
}

func newAuthenticator(store chronicle.TokenStore, required bool, limit float64, burst int, log *slog.Logger) *authenticator {
	l := rate.Inf
	if limit > 0 {
		l = rate.Limit(limit)
		burst = max(burst, 1)
	}
	return &authenticator{store: store, required: required, log: log, limit: l, burst: burst,
		limiters: map[string]*rate.Limiter{}}
}

// invalidate makes the next request reload the table.
func (a *authenticator) invalidate() {
	a.mu.Lock()
	a.loaded, a.tried = time.Time{}, time.Time{}
	a.mu.Unlock()
}

// load reloads the table when it is older than maxAge. Called with a.mu held.
func (a *authenticator) load(ctx context.Context, maxAge time.Duration) error {
	now := time.Now()
	if now.Sub(a.tried) < maxAge {
		return nil
	}
	a.tried = now
	ctx, cancel := context.WithTimeout(ctx, tokenLoadTimeout)
	defer cancel()
	list, err := a.store.Tokens(ctx)
	if err != nil {
		if !a.loaded.IsZero() && now.Sub(a.loaded) < tokenStaleMax {
			a.log.Warn("cannot reload API tokens; using the last copy", "err", err, "age", now.Sub(a.loaded))
			return nil
		}
		return chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "API tokens cannot be read: %v", err)
	}
	m := make(map[chronicle.TokenHash]chronicle.Token, len(list))
	for _, t := range list {
		m[t.Hash] = t
	}
	a.byHash, a.loaded = m, now
	a.any = a.any || len(list) > 0
	return nil
}

// lookup finds the token whose secret hashes to h (when presented), reloading the table
// when it is older than tokenRefresh, or when h is unknown and it is older than
// tokenMissReload (a token made on another node a moment ago).
func (a *authenticator) lookup(ctx context.Context, h chronicle.TokenHash, presented bool) (t chronicle.Token, found, anyToken bool, err error) {
	a.mu.RLock()
	fresh := time.Since(a.tried) < tokenRefresh
	if fresh {
		t, found = a.byHash[h]
		anyToken = a.any
	}
	a.mu.RUnlock()
	if fresh && (found || !presented) {
		return t, found, anyToken, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	maxAge := tokenRefresh
	if fresh {
		maxAge = tokenMissReload
	}
	if err := a.load(ctx, maxAge); err != nil {
		return chronicle.Token{}, false, false, err
	}
	t, found = a.byHash[h]
	return t, found, a.any, nil
}

// authenticate finds who r acts as. Without a token table (no store) or before the
// first token, an anonymous admin, unless a token was required or presented.
func (a *authenticator) authenticate(r *http.Request) (Principal, error) {
	secret, presented, err := bearer(r)
	if err != nil {
		return Principal{}, err
	}
	if a == nil {
		if presented {
			return Principal{}, unauthorized("this node has no API tokens; send no Authorization header")
		}
		return Principal{Role: chronicle.RoleAdmin}, nil
	}
	h := chronicle.HashToken(secret)
	t, found, anyToken, err := a.lookup(r.Context(), h, presented)
	if err != nil {
		return Principal{}, err
	}
	if !presented {
		if a.required || anyToken {
			return Principal{}, unauthorized("this node requires an API token: send Authorization: Bearer <token>")
		}
		return Principal{Role: chronicle.RoleAdmin}, nil
	}
	if !found {
		return Principal{}, unauthorized("unknown API token")
	}
	if t.Revoked() {
		return Principal{}, unauthorized("API token " + strconv.Quote(t.Name) + " was revoked")
	}
	return Principal{Name: t.Name, Role: t.Role}, nil
}

// allow takes one request from the principal's rate budget; when it is spent, wait is
// how long until the next request would be allowed.
func (a *authenticator) allow(p Principal) (ok bool, wait time.Duration) {
	if a == nil || a.limit == rate.Inf || p.Name == "" {
		return true, 0
	}
	a.mu.Lock()
	l, found := a.limiters[p.Name]
	if !found {
		// Bounded: names come from the token table only.
		l = rate.NewLimiter(a.limit, a.burst)
		a.limiters[p.Name] = l
	}
	a.mu.Unlock()
	r := l.Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel()
		return false, d
	}
	return true, 0
}

// bearer reads the Authorization header: presented is false when there is none.
func bearer(r *http.Request) (secret string, presented bool, err error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false, nil
	}
	scheme, secret, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
		return "", true, unauthorized("Authorization must be Bearer <token>")
	}
	return strings.TrimSpace(secret), true, nil
}

func unauthorized(msg string) error {
	return chronicle.Errorf(chronicle.KindUnauthenticated, chronicle.CodeUnauthorized, "%s", msg)
}

// PeerVerified reports whether the request came with a client certificate that the
// server verified against the cluster CA: a cluster node, allowed to manage membership.
func PeerVerified(r *http.Request) bool { return r.TLS != nil && len(r.TLS.VerifiedChains) > 0 }

// require lets through requests whose principal holds need, and rate-limits them per
// token. Membership changes (need == admin on /cluster routes) also admit a verified peer.
func (a *API) require(need chronicle.Role, peersToo bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if peersToo && PeerVerified(r) {
				next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, Principal{Name: "node", Role: chronicle.RoleAdmin})))
				return
			}
			p, err := a.auth.authenticate(r)
			if err != nil {
				if chronicle.AsError(err).Kind == chronicle.KindUnauthenticated {
					w.Header().Set("WWW-Authenticate", `Bearer realm="chronicle"`)
				}
				writeError(w, err)
				return
			}
			if !p.Role.Allows(need) {
				writeError(w, chronicle.Errorf(chronicle.KindForbidden, chronicle.CodeForbiddenRole,
					"token %q has role %s; this needs %s", p.Name, p.Role, need))
				return
			}
			if ok, wait := a.auth.allow(p); !ok {
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
				writeError(w, chronicle.Errorf(chronicle.KindTooMany, chronicle.CodeRateLimited,
					"token %q is over its rate limit; retry after %s", p.Name, wait.Round(time.Millisecond)))
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
		})
	}
}
