package chronicle

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"time"
)

// API tokens. A token is a random secret shown once, when it is made; what is kept (in
// the replicated state, or a table in SQL mode) is its SHA-256 hash, its name, its role
// and who made or revoked it when. The secrets are 256 random bits, so a plain hash is
// enough: there is no password to guess, and a lookup by hash reveals nothing. Token
// records are never deleted, only revoked, so a name is never reused and an event's
// created_by always names one principal.

// Role is what a token may do. Each role includes the ones below it.
type Role string

// Roles, weakest first.
const (
	// RoleReader reads accounts, statements, balances in time and the event log.
	RoleReader Role = "reader"
	// RoleWriter also executes commands.
	RoleWriter Role = "writer"
	// RoleAdmin also manages tokens and cluster membership.
	RoleAdmin Role = "admin"
)

func (r Role) rank() int {
	switch r {
	case RoleReader:
		return 1
	case RoleWriter:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r.rank() > 0 }

// Allows reports whether a holder of r may do what need requires.
func (r Role) Allows(need Role) bool { return r.Valid() && r.rank() >= need.rank() }

// TokenHash is the SHA-256 of a token's secret.
type TokenHash [sha256.Size]byte

// HashToken hashes a presented secret.
func HashToken(secret string) TokenHash { return sha256.Sum256([]byte(secret)) }

// TokenPrefix starts every secret this build generates, so that one is easy to recognise
// in a leaked file or a secret scanner.
const TokenPrefix = "chr_"

// MinTokenSecretLen is the shortest secret accepted from a bootstrap file: shorter ones
// could be guessed.
const MinTokenSecretLen = 32

// NewTokenSecret returns a new random secret: TokenPrefix and 256 random bits.
func NewTokenSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// Token is the kept record of an API token (never its secret).
type Token struct {
	Name      string
	Role      Role
	Hash      TokenHash
	CreatedAt time.Time
	CreatedBy string
	// RevokedAt is zero while the token is valid.
	RevokedAt time.Time
	RevokedBy string
}

// Revoked reports whether the token was revoked.
func (t Token) Revoked() bool { return !t.RevokedAt.IsZero() }

// MaxTokenNameLen bounds a token's name.
const MaxTokenNameLen = 64

// ValidateTokenName checks a token name: 1-64 of a-z, A-Z, 0-9, '.', '_', '-', starting
// with a letter or digit (it appears in every event's created_by and in URLs).
func ValidateTokenName(name string) error {
	if name == "" || len(name) > MaxTokenNameLen {
		return FieldErrorf(KindMalformed, CodeInvalidTokenName, "name", "token name must be 1 to %d characters", MaxTokenNameLen)
	}
	for i, c := range []byte(name) {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return FieldErrorf(KindMalformed, CodeInvalidTokenName, "name",
				"token name %q: use letters, digits, '.', '_' and '-', starting with a letter or digit", name)
		}
	}
	return nil
}

// TokenOpKind is what a TokenOp does.
type TokenOpKind uint8

// Token operations. Values are part of the log format and are never reused.
const (
	TokenCreate TokenOpKind = 1
	TokenRevoke TokenOpKind = 2
)

// TokenOp changes the token table. It is replicated as a log entry of its own kind
// (EntryToken), never as a ledger event: tokens appear neither in /events nor on NATS.
// Its time and principal are set by the node that accepts it, so every replica applies
// the same record.
type TokenOp struct {
	Kind TokenOpKind
	Name string
	// Role and Hash are set for TokenCreate.
	Role Role
	Hash TokenHash
	At   time.Time
	By   string
	// IfNone makes a TokenCreate a no-op when any token record exists: the bootstrap
	// token is created at most once, on a cluster that never had a token.
	IfNone bool
}

// Validate checks an operation before it is proposed.
func (op TokenOp) Validate() error {
	if err := ValidateTokenName(op.Name); err != nil {
		return err
	}
	switch op.Kind {
	case TokenCreate:
		if !op.Role.Valid() {
			return FieldErrorf(KindMalformed, CodeInvalidRole, "role", "role %q: want admin, writer or reader", string(op.Role))
		}
		if op.Hash == (TokenHash{}) {
			return Errorf(KindMalformed, CodeInvalidField, "token create without a hash")
		}
	case TokenRevoke:
	default:
		return Errorf(KindMalformed, CodeInvalidField, "unknown token operation %d", op.Kind)
	}
	return nil
}

// ApplyTokenOp is the state machine of the token table: given the record named by op
// (found reports whether it exists) and whether any record exists at all, it returns the
// record to store and whether to store it. Refusals are errors with stable codes. It is
// deterministic: every replica and the SQL store apply the same rules.
func ApplyTokenOp(op TokenOp, existing Token, found, anyExists bool) (Token, bool, error) {
	if err := op.Validate(); err != nil {
		return Token{}, false, err
	}
	switch op.Kind {
	case TokenCreate:
		if op.IfNone && anyExists {
			return existing, false, nil
		}
		if found {
			return Token{}, false, Errorf(KindConflict, CodeTokenExists, "a token named %q exists (names are never reused, even once revoked)", op.Name)
		}
		return Token{Name: op.Name, Role: op.Role, Hash: op.Hash, CreatedAt: op.At, CreatedBy: op.By}, true, nil
	default: // TokenRevoke
		if !found {
			return Token{}, false, Errorf(KindNotFound, CodeTokenNotFound, "no token named %q", op.Name)
		}
		if existing.Revoked() {
			return existing, false, nil
		}
		existing.RevokedAt, existing.RevokedBy = op.At, op.By
		return existing, true, nil
	}
}

// TokenStore keeps the token table. Every node of a cluster sees the same table.
type TokenStore interface {
	// ApplyToken applies op (on the leader, or in the SQL store's transaction) and returns
	// the token record as it stands afterwards.
	ApplyToken(ctx context.Context, op TokenOp) (Token, error)
	// Tokens lists every token record, revoked ones included, by name.
	Tokens(ctx context.Context) ([]Token, error)
}

const (
	tokenVersion   = 1
	tokenOpVersion = 1
)

// MarshalBinary encodes the record:
//
//	version u8 = 1 | name str | role str | hash [32] | created_at i64 | created_by str |
//	revoked_at i64 | revoked_by str
func (t Token) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 96+len(t.Name)+len(t.CreatedBy)+len(t.RevokedBy))
	b = appendU8(b, tokenVersion)
	b = appendStr(b, t.Name)
	b = appendStr(b, string(t.Role))
	b = append(b, t.Hash[:]...)
	b = appendTime(b, t.CreatedAt)
	b = appendStr(b, t.CreatedBy)
	b = appendTime(b, t.RevokedAt)
	return appendStr(b, t.RevokedBy), nil
}

// UnmarshalBinary decodes what MarshalBinary wrote.
func (t *Token) UnmarshalBinary(data []byte) error {
	d := decoder{b: data, what: "token"}
	d.version(tokenVersion)
	out := Token{Name: d.str(), Role: Role(d.str())}
	copy(out.Hash[:], d.take(len(out.Hash)))
	out.CreatedAt, out.CreatedBy, out.RevokedAt, out.RevokedBy = d.time(), d.str(), d.time(), d.str()
	if err := d.done(); err != nil {
		return err
	}
	*t = out
	return nil
}

// MarshalBinary encodes the operation (the payload of an EntryToken):
//
//	version u8 = 1 | kind u8 | name str | role str | hash [32] | at i64 | by str | if_none u8
func (op TokenOp) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 64+len(op.Name)+len(op.By))
	b = appendU8(b, tokenOpVersion)
	b = appendU8(b, uint8(op.Kind))
	b = appendStr(b, op.Name)
	b = appendStr(b, string(op.Role))
	b = append(b, op.Hash[:]...)
	b = appendTime(b, op.At)
	b = appendStr(b, op.By)
	var ifNone uint8
	if op.IfNone {
		ifNone = 1
	}
	return appendU8(b, ifNone), nil
}

// UnmarshalBinary decodes what MarshalBinary wrote.
func (op *TokenOp) UnmarshalBinary(data []byte) error {
	d := decoder{b: data, what: "token operation"}
	d.version(tokenOpVersion)
	out := TokenOp{Kind: TokenOpKind(d.u8()), Name: d.str(), Role: Role(d.str())}
	copy(out.Hash[:], d.take(len(out.Hash)))
	out.At, out.By = d.time(), d.str()
	switch d.u8() {
	case 0:
	case 1:
		out.IfNone = true
	default:
		d.fail("if_none flag is neither 0 nor 1")
	}
	if err := d.done(); err != nil {
		return err
	}
	*op = out
	return nil
}
