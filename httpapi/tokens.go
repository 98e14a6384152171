package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/api"
)

// mountTokens serves token management, for admins: POST /admin/tokens makes one (its
// secret is in the answer and nowhere else), GET /admin/tokens lists them, and POST
// /admin/tokens/{name}/revoke revokes one. Changes go to the leader like commands.
func (a *API) mountTokens(r chi.Router) {
	admin := r.With(a.require(chronicle.RoleAdmin, false))
	admin.Get("/admin/tokens", a.listTokens)
	admin.Post("/admin/tokens", a.createToken)
	admin.Post("/admin/tokens/{name}/revoke", a.revokeToken)
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request) {
	list, err := a.cfg.Tokens.Tokens(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	out := api.Tokens{Tokens: make([]api.Token, 0, len(list))}
	for _, t := range list {
		out.Tokens = append(out.Tokens, tokenInfo(t))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request) {
	body, err := a.readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	var req api.TokenCreate
	if err := decodeStrict(body, &req); err != nil {
		writeError(w, err)
		return
	}
	secret := chronicle.NewTokenSecret()
	op := chronicle.TokenOp{Kind: chronicle.TokenCreate, Name: req.Name, Role: chronicle.Role(req.Role),
		Hash: chronicle.HashToken(secret), At: time.Now().UTC(), By: principalName(r)}
	if err := op.Validate(); err != nil {
		writeError(w, err)
		return
	}
	if a.cfg.Cluster != nil && !a.cfg.Cluster.IsLeader() {
		a.toLeader(w, r, body)
		return
	}
	t, err := a.applyToken(r.Context(), op)
	if err != nil {
		if a.notLeaderRetry(w, r, body, err) {
			return
		}
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, api.TokenCreated{Token: tokenInfo(t), Secret: secret})
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request) {
	op := chronicle.TokenOp{Kind: chronicle.TokenRevoke, Name: chi.URLParam(r, "name"), At: time.Now().UTC(), By: principalName(r)}
	if err := op.Validate(); err != nil {
		writeError(w, err)
		return
	}
	if a.cfg.Cluster != nil && !a.cfg.Cluster.IsLeader() {
		a.toLeader(w, r, nil)
		return
	}
	t, err := a.applyToken(r.Context(), op)
	if err != nil {
		if a.notLeaderRetry(w, r, nil, err) {
			return
		}
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, tokenInfo(t))
}

func (a *API) applyToken(ctx context.Context, op chronicle.TokenOp) (chronicle.Token, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	t, err := a.cfg.Tokens.ApplyToken(ctx, op)
	if a.auth != nil {
		a.auth.invalidate() // this node sees its own change at once
	}
	return t, err
}

// principalName is who a request acts as, for the token records it writes.
func principalName(r *http.Request) string {
	if p, _ := PrincipalFrom(r.Context()); p.Name != "" {
		return p.Name
	}
	return "anonymous"
}

func tokenInfo(t chronicle.Token) api.Token {
	out := api.Token{Name: t.Name, Role: string(t.Role), CreatedAt: t.CreatedAt, CreatedBy: t.CreatedBy,
		Revoked: t.Revoked(), RevokedBy: t.RevokedBy}
	if t.Revoked() {
		at := t.RevokedAt
		out.RevokedAt = &at
	}
	return out
}
