package storetest

import (
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
)

// testTokens: the token table's rules hold in every store, survive a restart, and never
// touch the ledger (no event, no position).
func testTokens(t *testing.T, h Harness) {
	s := h.Open(t)
	ts, ok := s.(chronicle.TokenStore)
	if !ok {
		t.Fatalf("%T does not implement chronicle.TokenStore", s)
	}
	ctx, cancel := callCtx(t)
	defer cancel()
	at := time.Now().UTC().Truncate(time.Microsecond) // SQL keeps microseconds
	boot := chronicle.TokenOp{Kind: chronicle.TokenCreate, Name: "bootstrap-admin", Role: chronicle.RoleAdmin,
		Hash: chronicle.HashToken("first"), At: at, By: "bootstrap", IfNone: true}
	got, err := ts.ApplyToken(ctx, boot)
	if err != nil || got.Name != boot.Name || got.Role != chronicle.RoleAdmin || got.Hash != boot.Hash || !got.CreatedAt.Equal(at) {
		t.Fatalf("bootstrap create: %+v, %v", got, err)
	}
	// A second bootstrap (another node, a restart with the flag) changes nothing, even
	// under another name and secret.
	again := boot
	again.Name, again.Hash = "bootstrap-2", chronicle.HashToken("second")
	if _, err := ts.ApplyToken(ctx, again); err != nil {
		t.Fatalf("second bootstrap: %v", err)
	}
	reader := chronicle.TokenOp{Kind: chronicle.TokenCreate, Name: "dash", Role: chronicle.RoleReader,
		Hash: chronicle.HashToken("reader-secret"), At: at, By: "bootstrap-admin"}
	if _, err := ts.ApplyToken(ctx, reader); err != nil {
		t.Fatalf("create reader: %v", err)
	}
	dup := reader
	dup.Hash = chronicle.HashToken("other")
	if _, err := ts.ApplyToken(ctx, dup); chronicle.AsError(err).Code != chronicle.CodeTokenExists {
		t.Fatalf("create a taken name: %v, want %s", err, chronicle.CodeTokenExists)
	}
	bad := reader
	bad.Name, bad.Role = "x", "root"
	if _, err := ts.ApplyToken(ctx, bad); chronicle.AsError(err).Code != chronicle.CodeInvalidRole {
		t.Fatalf("create with role root: %v, want %s", err, chronicle.CodeInvalidRole)
	}
	revokeAt := at.Add(time.Second)
	revoke := chronicle.TokenOp{Kind: chronicle.TokenRevoke, Name: "dash", At: revokeAt, By: "bootstrap-admin"}
	if got, err := ts.ApplyToken(ctx, revoke); err != nil || !got.RevokedAt.Equal(revokeAt) || got.RevokedBy != "bootstrap-admin" {
		t.Fatalf("revoke: %+v, %v", got, err)
	}
	if _, err := ts.ApplyToken(ctx, chronicle.TokenOp{Kind: chronicle.TokenRevoke, Name: "nobody", At: at}); chronicle.AsError(err).Code != chronicle.CodeTokenNotFound {
		t.Fatalf("revoke a missing token: %v, want %s", err, chronicle.CodeTokenNotFound)
	}
	// Revoked names stay taken.
	if _, err := ts.ApplyToken(ctx, reader); chronicle.AsError(err).Code != chronicle.CodeTokenExists {
		t.Fatalf("recreate a revoked name: %v, want %s", err, chronicle.CodeTokenExists)
	}
	check := func(ts chronicle.TokenStore, when string) {
		t.Helper()
		list, err := ts.Tokens(ctx)
		if err != nil {
			t.Fatalf("%s: list: %v", when, err)
		}
		if len(list) != 2 || list[0].Name != "bootstrap-admin" || list[1].Name != "dash" ||
			list[0].Revoked() || !list[1].Revoked() || list[1].Hash != reader.Hash || list[1].Role != chronicle.RoleReader {
			t.Fatalf("%s: tokens %+v", when, list)
		}
	}
	check(ts, "before restart")
	if head := mustHead(t, s); head.Position != 0 {
		t.Fatalf("token operations moved the ledger's head to %d", head.Position)
	}
	if h.Reopen != nil {
		s = h.Reopen(t, s)
		check(s.(chronicle.TokenStore), "after restart")
	}
}
