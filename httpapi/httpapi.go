// Package httpapi serves Chronicle's HTTP API with chi: the seed-compatible command and
// query endpoints, health and readiness, JSON errors with stable codes.
package httpapi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/api"
	"github.com/chronicle-ledger/chronicle/internal/metrics"
)

// Node is what the API needs of the node beyond its event store.
type Node interface {
	// Ready returns nil when the node can take commands, or why not.
	Ready(ctx context.Context) error
	// Status describes the node for /ready and the dashboard.
	Status() any
	// WaitApplied blocks until this node's write-side state includes position pos.
	WaitApplied(ctx context.Context, pos uint64) error
	// WaitView blocks until the read model includes position pos.
	WaitView(ctx context.Context, pos uint64) error
	// Changes signals (coalesced) whenever the log grows; stop ends the signals.
	Changes() (signal <-chan struct{}, stop func())
}

// Config configures the API.
type Config struct {
	// Store is the write side: commands, the log, balance history.
	Store chronicle.EventStore
	// Reads is the read model the account queries are served from.
	Reads chronicle.ReadModel
	Node  Node
	// Cluster enables forwarding to the leader, read consistency levels and the
	// /cluster endpoints; nil serves everything locally.
	Cluster Cluster
	// CORSOrigins lists browser origins allowed to call the API ("*" for any); only
	// these and the node's own origin may send state-changing requests from a browser.
	CORSOrigins []string
	// AllowedHosts lists the Host names (optionally host:port) the API answers to, the
	// loopback names always included; empty accepts any Host. Others get 421
	// forbidden_host (DNS rebinding), on every route but /health.
	AllowedHosts []string
	// Tokens is the token table requests are authenticated against (nil: every request
	// is anonymous and may do anything, as on a loopback node without tokens).
	Tokens chronicle.TokenStore
	// AuthRequired refuses requests without a valid token even while the table is
	// empty (a node given a bootstrap token). Once the table holds a token, tokens are
	// required anyway.
	AuthRequired bool
	// RateLimit is how many requests per second one token may make, with bursts of
	// RateBurst (0: unlimited). Beyond it, 429 rate_limited with Retry-After.
	RateLimit float64
	RateBurst int
	// MaxBodyBytes bounds a request body (default 1 MiB).
	MaxBodyBytes int64
	// RequestTimeout bounds how long one command waits for its acknowledgement.
	RequestTimeout time.Duration
	// MaxWait bounds a query's wait for ?min_position.
	MaxWait time.Duration
	// Role selects what this process serves: RoleAll (default), RoleCommand (commands
	// and ops endpoints) or RoleQuery (reads, the event log and stream, the dashboard).
	Role string
	// DefaultCurrency is what create-account takes when the request names no currency
	// (default "USD", as the original system assumed).
	DefaultCurrency string
	// MaxAmount is the largest amount (and initial balance and overdraft limit) one
	// command may carry, in major units of its currency, whatever the currency (default
	// DefaultMaxAmount). It is checked when a command is accepted, never by the state
	// machine, so that differently configured nodes cannot disagree on the log.
	MaxAmount chronicle.Decimal
	// MaxStreams and MaxStreamsPerClient cap open /events/stream connections in total
	// and per remote IP (defaults DefaultMaxStreams, DefaultMaxStreamsPerClient).
	MaxStreams          int
	MaxStreamsPerClient int
	// MaxInflightCommands caps command requests executing at once (default
	// DefaultMaxInflightCommands); beyond it they are refused with 429.
	MaxInflightCommands int
	// BodyReadTimeout bounds reading a request's body (default DefaultBodyReadTimeout).
	BodyReadTimeout time.Duration
	// WriteTimeout bounds writing a response, and each write of an event stream (default
	// DefaultWriteTimeout). It must exceed RequestTimeout.
	WriteTimeout time.Duration
	// JoinTimeout bounds a POST /cluster/join, which waits until the joining node has
	// caught up with the log (default DefaultJoinTimeout).
	JoinTimeout time.Duration
	// ForwardTryTimeout bounds one try at forwarding a request that may be retried to the
	// leader (default DefaultForwardTryTimeout); see toLeader.
	ForwardTryTimeout time.Duration
	// Backup, when set, opens an online backup of the node's state for GET /admin/backup;
	// nil (SQL mode) answers 501 backup_unsupported.
	Backup func(ctx context.Context) (BackupSource, error)
	// PeerTLS, when set, is the cluster's mutual TLS as a client (the cluster CA as
	// roots, this node's certificate): forwarding to the leader uses it, and membership
	// changes need a verified peer certificate (PeerVerified). nil: plain HTTP.
	PeerTLS *tls.Config
	// Metrics, when set, serves GET /metrics (role reader) and records commands and
	// requests into it; nil: no /metrics and nothing recorded.
	Metrics *metrics.Set
	Logger  *slog.Logger
	Version string
}

// API is the HTTP handler.
type API struct {
	cfg     Config
	log     *slog.Logger
	router  chi.Router
	forward *http.Client
	// closing ends live streams when the server shuts down (they would hold it open).
	closing   chan struct{}
	closeOnce sync.Once
	streams   *streamSlots
	hub       *hub
	// inflight holds a token per command request executing (limitInflight).
	inflight chan struct{}
	// maxAmount is cfg.MaxAmount parsed.
	maxAmount *big.Rat
	// auth judges tokens; nil when the node has no token table.
	auth *authenticator
	// cmdMetrics and httpMetrics record commands and requests (nil: metrics off).
	cmdMetrics  *metrics.Commands
	httpMetrics *metrics.HTTP
	// backupSlot holds a token while a backup is streamed: one at a time.
	backupSlot chan struct{}
}

// StreamStats describes the event streams, for tests and status.
type StreamStats struct {
	// Open is how many streams are open.
	Open int `json:"open"`
	// Encoded counts events encoded as stream frames since the node started.
	Encoded uint64 `json:"encoded"`
}

// StreamStats reports the event streams' counters.
func (a *API) StreamStats() StreamStats {
	return StreamStats{Open: a.streams.open(), Encoded: a.hub.encoded.Load()}
}

// CloseStreams ends every open /events/stream so that a graceful shutdown need not wait
// for clients that never hang up.
func (a *API) CloseStreams() { a.closeOnce.Do(func() { close(a.closing) }) }

// ParseMaxAmount checks a Config.MaxAmount: a positive decimal.
func ParseMaxAmount(d chronicle.Decimal) (*big.Rat, error) {
	v, ok := new(big.Rat).SetString(string(d))
	if !ok || v.Sign() <= 0 {
		return nil, fmt.Errorf("max amount %q: want a positive decimal", string(d))
	}
	return v, nil
}

// New builds the router. cfg.MaxAmount must pass ParseMaxAmount.
func New(cfg Config) *API {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 15 * time.Second
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DefaultCurrency == "" {
		cfg.DefaultCurrency = "USD"
	}
	if cfg.Role == "" {
		cfg.Role = RoleAll
	}
	if cfg.MaxAmount == "" {
		cfg.MaxAmount = DefaultMaxAmount
	}
	maxAmount, err := ParseMaxAmount(cfg.MaxAmount)
	if err != nil {
		panic("httpapi: " + err.Error()) // the caller validates configuration first
	}
	cfg.MaxStreams = positiveOr(cfg.MaxStreams, DefaultMaxStreams)
	cfg.MaxStreamsPerClient = positiveOr(cfg.MaxStreamsPerClient, DefaultMaxStreamsPerClient)
	cfg.MaxInflightCommands = positiveOr(cfg.MaxInflightCommands, DefaultMaxInflightCommands)
	cfg.BodyReadTimeout = positiveOr(cfg.BodyReadTimeout, DefaultBodyReadTimeout)
	cfg.WriteTimeout = positiveOr(cfg.WriteTimeout, max(DefaultWriteTimeout, 2*cfg.RequestTimeout))
	cfg.ForwardTryTimeout = positiveOr(cfg.ForwardTryTimeout, DefaultForwardTryTimeout)
	cfg.JoinTimeout = positiveOr(cfg.JoinTimeout, DefaultJoinTimeout)
	a := &API{cfg: cfg, log: cfg.Logger.With("component", "httpapi"), closing: make(chan struct{}),
		forward:   &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute, TLSClientConfig: cfg.PeerTLS}},
		streams:   newStreamSlots(cfg.MaxStreams, cfg.MaxStreamsPerClient),
		hub:       newHub(cfg.Store, func() (<-chan struct{}, func()) { return cfg.Node.Changes() }, hubFrames),
		inflight:  make(chan struct{}, cfg.MaxInflightCommands),
		maxAmount: maxAmount, backupSlot: make(chan struct{}, 1)}
	if cfg.Tokens != nil {
		a.auth = newAuthenticator(cfg.Tokens, cfg.AuthRequired, cfg.RateLimit, cfg.RateBurst, a.log)
	}
	if cfg.Metrics != nil {
		a.cmdMetrics, a.httpMetrics = cfg.Metrics.Commands, cfg.Metrics.HTTP
	}
	r := chi.NewRouter()
	r.Use(a.deadlines, middleware.RequestID, a.recoverer, a.logRequests, a.hostGuard, a.cors, a.browserGuard, a.servedBy)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, chronicle.Errorf(chronicle.KindNotFound, chronicle.CodeNotFound, "no route for %s %s", r.Method, r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeErrorStatus(w, http.StatusMethodNotAllowed, chronicle.CodeMethodNotAllowed, "method "+r.Method+" is not allowed here")
	})
	r.Get("/health", a.health)
	r.Get("/openapi.json", a.openAPI)
	r.Get("/ready", a.ready)
	if cfg.Metrics != nil {
		// Every role: a command process's commands and a query process's reads alike.
		r.With(a.require(chronicle.RoleReader, false)).Get("/metrics", cfg.Metrics.Handler(a.log).ServeHTTP)
	}
	// /health, /ready, /openapi.json and the dashboard's files are public: they hold no
	// ledger data, and the dashboard must load to ask for a token.
	if cfg.Role != RoleQuery {
		r.Route("/commands", func(r chi.Router) {
			r.Use(a.require(chronicle.RoleWriter, false), a.limitInflight)
			r.Post("/create-account", a.command(chronicle.CmdCreateAccount))
			r.Post("/deposit", a.command(chronicle.CmdDeposit))
			r.Post("/withdraw", a.command(chronicle.CmdWithdraw))
			r.Post("/transfer", a.command(chronicle.CmdTransfer))
			r.Post("/freeze-account", a.command(chronicle.CmdFreezeAccount))
			r.Post("/unfreeze-account", a.command(chronicle.CmdUnfreezeAccount))
			r.Post("/close-account", a.command(chronicle.CmdCloseAccount))
			r.Post("/capture-transfer", a.command(chronicle.CmdCaptureTransfer))
			r.Post("/void-transfer", a.command(chronicle.CmdVoidTransfer))
			r.Post("/batch", a.batch)
		})
		if cfg.Tokens != nil {
			a.mountTokens(r)
		}
	}
	if cfg.Role != RoleCommand {
		r.Group(func(r chi.Router) {
			r.Use(a.require(chronicle.RoleReader, false))
			r.Get("/accounts", a.listAccounts)
			r.Get("/accounts/{id}", a.getAccount)
			r.Get("/accounts/{id}/transactions", a.transactions)
			r.Get("/accounts/{id}/balance-at", a.balanceAt)
			r.Get("/events", a.events)
			r.Get("/events/stream", a.stream)
			r.Get("/overview", a.overviewHandler())
		})
	}
	r.With(a.require(chronicle.RoleAdmin, false)).Get("/admin/backup", a.backup)
	if cfg.Cluster != nil {
		a.mountCluster(r)
	}
	if cfg.Role != RoleCommand {
		a.mountWeb(r)
	}
	a.router = r
	return a
}

// positiveOr is v, or def when v is not positive.
func positiveOr[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Roles of a process in the SQL topology (see Config.Role).
const (
	RoleAll     = "all"
	RoleCommand = "command"
	RoleQuery   = "query"
)

// defaults are the settings resolved into every command this API accepts.
func (a *API) defaults() commandDefaults {
	return commandDefaults{Currency: a.cfg.DefaultCurrency, MaxAmount: a.maxAmount, MaxAmountText: a.cfg.MaxAmount,
		maxIntDigits: intDigits(a.maxAmount)}
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.router.ServeHTTP(w, r) }

// Router exposes the router so the node can mount more (the dashboard, cluster routes).
func (a *API) Router() chi.Router { return a.router }

func (a *API) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.Health{Status: "ok", Service: "chronicle", Version: a.cfg.Version})
}

// openAPI serves the OpenAPI document of every route.
func (a *API) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(api.OpenAPI())
}

func (a *API) ready(w http.ResponseWriter, r *http.Request) {
	body := api.Ready{Status: "ready", Node: a.cfg.Node.Status()}
	if err := a.cfg.Node.Ready(r.Context()); err != nil {
		body.Status = "not_ready"
		body.Error = err.Error()
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func writeError(w http.ResponseWriter, err error) {
	e := chronicle.AsError(err)
	writeJSON(w, httpStatus(e.Kind), api.ErrorBody{Message: e.Message, Code: e.Code, Field: e.Field})
}

// httpStatus is the status code a response carrying an error of kind k uses.
func httpStatus(k chronicle.Kind) int {
	switch k {
	case chronicle.KindMalformed:
		return http.StatusBadRequest
	case chronicle.KindNotFound:
		return http.StatusNotFound
	case chronicle.KindConflict:
		return http.StatusConflict
	case chronicle.KindRejected:
		return http.StatusUnprocessableEntity
	case chronicle.KindTooLarge:
		return http.StatusRequestEntityTooLarge
	case chronicle.KindUnavailable:
		return http.StatusServiceUnavailable
	case chronicle.KindTimeout:
		return http.StatusGatewayTimeout
	case chronicle.KindUnauthenticated:
		return http.StatusUnauthorized
	case chronicle.KindForbidden:
		return http.StatusForbidden
	case chronicle.KindTooMany:
		return http.StatusTooManyRequests
	case chronicle.KindInsufficientStorage:
		return http.StatusInsufficientStorage
	default:
		return http.StatusInternalServerError
	}
}

func writeErrorStatus(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, api.ErrorBody{Message: msg, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v) // the client went away; nothing to do
}

// recoverer turns a panic into a logged 500: a bug, never the client's fault.
func (a *API) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				a.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", v)
				writeErrorStatus(w, http.StatusInternalServerError, chronicle.CodeInternal, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (a *API) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		start := time.Now()
		next.ServeHTTP(ww, r)
		if a.httpMetrics != nil {
			a.observeRequest(r, ww.Status(), time.Since(start))
		}
		level := slog.LevelDebug
		if ww.Status() >= 500 {
			level = slog.LevelError
		}
		// Most requests log at debug, which is usually off: check before building the
		// record's attributes (boxing them costs allocations per request).
		if !a.log.Enabled(r.Context(), level) {
			return
		}
		a.log.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path, "status", ww.Status(),
			"bytes", ww.BytesWritten(), "duration", time.Since(start), "request_id", middleware.GetReqID(r.Context()))
	})
}

// cors lets browser clients on the configured origins call the API, as the seed let its
// dashboard on another port do.
func (a *API) cors(next http.Handler) http.Handler {
	allowed := map[string]bool{}
	any := false
	for _, o := range a.cfg.CORSOrigins {
		if o == "*" {
			any = true
		}
		allowed[o] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" && (any || allowed[origin]) {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
			h.Set("Access-Control-Expose-Headers", "X-Request-Id, X-Chronicle-Position, X-Chronicle-Leader, Retry-After, WWW-Authenticate")
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
				h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization, Idempotency-Key, X-Request-Id, Last-Event-ID")
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// servedBy names the node that answered and, on a node that leads, the leader.
func (a *API) servedBy(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := a.cfg.Cluster; c != nil {
			w.Header().Set(headerServedBy, c.NodeID())
			if c.IsLeader() {
				w.Header().Set(headerLeader, c.NodeID())
			}
		}
		next.ServeHTTP(w, r)
	})
}
