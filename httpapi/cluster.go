package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/api"
)

// Cluster is what the API needs of Raft membership and leadership.
type Cluster interface {
	// NodeID is this node's id.
	NodeID() string
	// IsLeader reports whether this node leads now.
	IsLeader() bool
	// LeaderURL is the leader's API base URL; an error (no_leader) when none is known.
	LeaderURL(ctx context.Context) (string, error)
	// VerifyLeader confirms leadership with a quorum and waits until this node has
	// applied everything committed so far.
	VerifyLeader(ctx context.Context) error
	// LeaderBarrier waits until a newly elected leader has applied everything its
	// predecessors committed (once per term).
	LeaderBarrier(ctx context.Context) error
	// Info describes this node alone (GET /cluster/info).
	Info(ctx context.Context) any
	// Overview describes every member as seen from here (GET /cluster).
	Overview(ctx context.Context) (any, error)
	// Join admits a node (leader only).
	Join(ctx context.Context, id, raftAddr, apiURL string) error
	// Remove removes a node (leader only).
	Remove(ctx context.Context, id string) error
}

// Headers of forwarding.
// leaderWait bounds how long a follower waits for a leader to be elected and known.
const leaderWait = 3 * time.Second

const (
	headerForwarded = "X-Chronicle-Forwarded-By"
	headerLeader    = "X-Chronicle-Leader"
	headerServedBy  = "X-Chronicle-Served-By"
)

// forwardable reports whether a request may still be forwarded: once only, so that two
// nodes that each believe the other leads cannot bounce a request between them.
func forwardable(r *http.Request) bool { return r.Header.Get(headerForwarded) == "" }

// retryable reports whether a request may be sent to the leader a second time after a
// try whose outcome is unknown: a read, or a single command carrying an Idempotency-Key
// (the leader answers a repeat with the first outcome). Anything else (a batch, whose
// keys are per item; a membership change) is sent once, bounded by the request timeout
// alone, so that it can never take effect twice.
func retryable(r *http.Request) bool {
	switch {
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		return true
	case r.Method != http.MethodPost || r.URL.Path == "/commands/batch":
		return false
	default:
		return strings.HasPrefix(r.URL.Path, "/commands/") && r.Header.Get("Idempotency-Key") != ""
	}
}

// toLeader proxies the request (whose body was already read into body) to the leader and
// copies its answer back, or writes an error.
//
// A request that may be retried (retryable) gets ForwardTryTimeout per try to receive
// the leader's answer; when a try runs out the leader is looked up again and the request
// sent to the new one, within the request timeout, so that a paused or wedged leader
// costs one try, not its whole pause. A leader that refuses connections never got the
// request: that is retried whatever the request.
func (a *API) toLeader(w http.ResponseWriter, r *http.Request, body []byte) {
	a.toLeaderWithin(w, r, body, a.cfg.RequestTimeout)
}

// toLeaderWithin is toLeader for a request that may take longer than RequestTimeout
// on the leader (a join).
func (a *API) toLeaderWithin(w http.ResponseWriter, r *http.Request, body []byte, timeout time.Duration) {
	if !forwardable(r) {
		writeError(w, chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeNotLeader, "this node is not the leader and the request was already forwarded once"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	retry := retryable(r)
	// An election takes one to two seconds; wait a little longer than that for a leader,
	// not the whole request timeout, so a cut-off node answers no_leader promptly.
	deadline := time.Now().Add(leaderWait)
	tried := ""
	for {
		waitCtx, waitCancel := context.WithDeadline(ctx, deadline)
		leader, err := a.waitNewLeaderURL(waitCtx, tried)
		waitCancel()
		if err != nil && tried != "" && ctx.Err() == nil {
			// No other leader is known: the one tried may merely have been slow.
			leader, err = a.cfg.Cluster.LeaderURL(ctx)
		}
		if err != nil {
			writeError(w, err)
			return
		}
		tryCtx, tryCancel := context.WithCancel(ctx)
		var timer *time.Timer
		if retry {
			timer = time.AfterFunc(a.cfg.ForwardTryTimeout, tryCancel)
		}
		resp, err := a.send(tryCtx, r, body, leader)
		if timer != nil && !timer.Stop() && err == nil {
			// The try ran out just as the answer arrived: its body is cut off, so the
			// outcome is unknown; retry as for a timeout.
			resp.Body.Close()
			err = context.DeadlineExceeded
		}
		var op *net.OpError
		switch {
		case err == nil:
		case errors.As(err, &op) && op.Op == "dial":
			tryCancel()
			if time.Now().Before(deadline) {
				tried = leader
				continue
			}
			e := chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeNoLeader, "the leader at %s is unreachable (%v); the request was not delivered, retry", leader, op.Err)
			e.Safe = true
			writeError(w, e)
			return
		case retry && ctx.Err() == nil && tryCtx.Err() != nil:
			// This try ran out: look the leader up again and send the request there.
			tryCancel()
			a.log.Info("forwarding to the leader timed out; retrying", "leader", leader, "try_timeout", a.cfg.ForwardTryTimeout)
			tried = leader
			deadline = time.Now().Add(leaderWait)
			continue
		default:
			tryCancel()
			// The leader may or may not have committed the command: say so.
			writeError(w, chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "forwarding to the leader at %s failed: %v; the outcome is unknown, retry with the same Idempotency-Key", leader, err))
			return
		}
		defer tryCancel()
		defer resp.Body.Close()
		for _, h := range []string{"Content-Type", "X-Chronicle-Position", headerLeader, headerServedBy} {
			if v := resp.Header.Get(h); v != "" {
				w.Header().Set(h, v)
			}
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		return
	}
}

// send forwards one request to the leader at base.
func (a *API) send(ctx context.Context, r *http.Request, body []byte, base string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, base+r.URL.RequestURI(), rd)
	if err != nil {
		return nil, err
	}
	for _, h := range []string{"Content-Type", "Idempotency-Key", "Last-Event-ID", "Accept", "Authorization"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set("X-Request-Id", middleware.GetReqID(r.Context()))
	req.Header.Set(headerForwarded, a.cfg.Cluster.NodeID())
	return a.forward.Do(req)
}

// waitNewLeaderURL waits (bounded by ctx) for a leader other than the one at skip to be
// known, as during an election.
func (a *API) waitNewLeaderURL(ctx context.Context, skip string) (string, error) {
	t := time.NewTicker(25 * time.Millisecond)
	defer t.Stop()
	for {
		u, err := a.cfg.Cluster.LeaderURL(ctx)
		if err == nil && u != skip {
			return u, nil
		}
		if err == nil {
			err = chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeNoLeader, "the leader at %s is unreachable and no successor is elected yet; the request was not delivered, retry", skip)
			err.(*chronicle.Error).Safe = true
		}
		select {
		case <-ctx.Done():
			return "", err
		case <-t.C:
		}
	}
}

// consistent applies the read's ?consistency= level: local (this node's state), leader
// (default: served by the leader), linearizable (leader verified with a quorum). It
// reports whether the caller should serve the read here; otherwise it has answered.
func (a *API) consistent(w http.ResponseWriter, r *http.Request) bool {
	level := r.URL.Query().Get("consistency")
	switch level {
	case "local":
		return true
	case "", "leader", "linearizable":
	default:
		writeError(w, chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeInvalidQuery, "consistency", "consistency must be local, leader or linearizable"))
		return false
	}
	if a.cfg.Cluster == nil {
		return true
	}
	if !a.cfg.Cluster.IsLeader() {
		a.toLeader(w, r, nil)
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.MaxWait)
	defer cancel()
	check := a.cfg.Cluster.LeaderBarrier
	if level == "linearizable" {
		check = a.cfg.Cluster.VerifyLeader
	}
	if err := check(ctx); err != nil {
		writeError(w, err)
		return false
	}
	return true
}

func (a *API) mountCluster(r chi.Router) {
	// /cluster/info is public like /ready: nodes read it from each other (to found a
	// cluster and to show the overview) and it holds no ledger data.
	r.Get("/cluster/info", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.cfg.Cluster.Info(r.Context()))
	})
	r.With(a.require(chronicle.RoleReader, false)).Get("/cluster", func(w http.ResponseWriter, r *http.Request) {
		ov, err := a.cfg.Cluster.Overview(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, ov)
	})
	admin := r.With(a.require(chronicle.RoleAdmin, true))
	admin.Post("/cluster/join", func(w http.ResponseWriter, r *http.Request) {
		if !a.peerOnly(w, r) {
			return
		}
		// The answer comes once the joining node has caught up: allow for that, on
		// top of the usual time to write it.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(a.cfg.JoinTimeout + a.cfg.WriteTimeout))
		body, err := a.readBody(w, r)
		if err != nil {
			writeError(w, err)
			return
		}
		var req api.JoinRequest
		if err := decodeStrict(body, &req); err != nil {
			writeError(w, err)
			return
		}
		if err := chronicle.ValidateAccountID("node_id", req.NodeID); err != nil {
			writeError(w, err)
			return
		}
		if req.RaftAddr == "" {
			writeError(w, chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeMissingField, "raft_addr", "raft_addr is required"))
			return
		}
		if _, _, err := net.SplitHostPort(req.RaftAddr); err != nil {
			writeError(w, chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeInvalidField, "raft_addr", "raft_addr %q is not host:port", req.RaftAddr))
			return
		}
		// The leader follows the joining node's catch-up through its API.
		if req.APIURL == "" {
			writeError(w, chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeMissingField, "api_url", "api_url is required: the leader asks the joining node there how far it has caught up"))
			return
		}
		if u, err := url.Parse(req.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			writeError(w, chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeInvalidField, "api_url", "api_url %q is not an http(s) URL", req.APIURL))
			return
		}
		if !a.cfg.Cluster.IsLeader() {
			a.toLeaderWithin(w, r, body, a.cfg.JoinTimeout)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), a.cfg.JoinTimeout)
		defer cancel()
		if err := a.cfg.Cluster.Join(ctx, req.NodeID, req.RaftAddr, req.APIURL); err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, api.JoinResponse{Success: true, NodeID: req.NodeID, Leader: a.cfg.Cluster.NodeID()})
	})
	admin.Delete("/cluster/nodes/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !a.peerOnly(w, r) {
			return
		}
		if !a.cfg.Cluster.IsLeader() {
			a.toLeader(w, r, nil)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), a.cfg.RequestTimeout)
		defer cancel()
		id := chi.URLParam(r, "id")
		if err := a.cfg.Cluster.Remove(ctx, id); err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, api.RemoveResponse{Success: true, Removed: id})
	})
}
