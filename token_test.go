package chronicle_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
)

func TestRoleAllows(t *testing.T) {
	for _, c := range []struct {
		have, need chronicle.Role
		ok         bool
	}{
		{chronicle.RoleAdmin, chronicle.RoleAdmin, true},
		{chronicle.RoleAdmin, chronicle.RoleReader, true},
		{chronicle.RoleWriter, chronicle.RoleWriter, true},
		{chronicle.RoleWriter, chronicle.RoleAdmin, false},
		{chronicle.RoleReader, chronicle.RoleWriter, false},
		{"root", chronicle.RoleReader, false},
		{"", chronicle.RoleReader, false},
	} {
		if got := c.have.Allows(c.need); got != c.ok {
			t.Errorf("%q allows %q = %v, want %v", c.have, c.need, got, c.ok)
		}
	}
}

func TestTokenNames(t *testing.T) {
	for _, ok := range []string{"a", "ops-team", "ci.deploy_2", strings.Repeat("x", chronicle.MaxTokenNameLen)} {
		if err := chronicle.ValidateTokenName(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", ".a", "a b", "a/b", "é", "a\x00", strings.Repeat("x", chronicle.MaxTokenNameLen+1)} {
		if err := chronicle.ValidateTokenName(bad); chronicle.AsError(err).Code != chronicle.CodeInvalidTokenName {
			t.Errorf("%q: %v, want %s", bad, err, chronicle.CodeInvalidTokenName)
		}
	}
}

func TestTokenSecrets(t *testing.T) {
	a, b := chronicle.NewTokenSecret(), chronicle.NewTokenSecret()
	if a == b || !strings.HasPrefix(a, chronicle.TokenPrefix) || len(a) < chronicle.MinTokenSecretLen+len(chronicle.TokenPrefix) {
		t.Fatalf("secrets %q and %q", a, b)
	}
	if chronicle.HashToken(a) == chronicle.HashToken(b) || chronicle.HashToken(a) != chronicle.HashToken(a) {
		t.Fatal("hashes do not tell secrets apart")
	}
}

func TestTokenBinaryRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 30, 8, 0, 0, 123, time.UTC)
	tok := chronicle.Token{Name: "ops", Role: chronicle.RoleWriter, Hash: chronicle.HashToken("s"), CreatedAt: at, CreatedBy: "admin"}
	b, _ := tok.MarshalBinary()
	var got chronicle.Token
	if err := got.UnmarshalBinary(b); err != nil || got != tok || got.Revoked() {
		t.Fatalf("token round trip: %+v, %v", got, err)
	}
	op := chronicle.TokenOp{Kind: chronicle.TokenRevoke, Name: "ops", At: at, By: "admin"}
	ob, _ := op.MarshalBinary()
	var gotOp chronicle.TokenOp
	if err := gotOp.UnmarshalBinary(ob); err != nil || gotOp != op {
		t.Fatalf("op round trip: %+v, %v", gotOp, err)
	}
	ob[len(ob)-1] = 2
	if err := gotOp.UnmarshalBinary(ob); err == nil {
		t.Fatal("an if_none byte of 2 decoded")
	}
}
