// Package pgtest gives tests a PostgreSQL server, and a schema of their own on it.
//
// The server is CHRONICLE_TEST_PG_URL (default DefaultURL). When none answers, a test
// that asks for it is skipped with a message saying so, or fails instead when
// CHRONICLE_REQUIRE_PG=1 (as CI sets it). Tests share the server and run in parallel,
// so each one works in a fresh schema that Schema creates and drops again.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultURL is the server used when CHRONICLE_TEST_PG_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Environment variables read by URL.
const (
	EnvURL     = "CHRONICLE_TEST_PG_URL"
	EnvRequire = "CHRONICLE_REQUIRE_PG"
)

// reachTimeout bounds how long URL waits for the server to answer.
const reachTimeout = 3 * time.Second

// probes remembers, per URL, whether the server answered, so a missing server costs
// the timeout once per test binary, not once per test.
var probes sync.Map // string -> *probe

type probe struct {
	once sync.Once
	err  error
}

// URL returns the test server's URL, or skips t (fails it with CHRONICLE_REQUIRE_PG=1)
// when no server answers within a few seconds.
func URL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvURL)
	if u == "" {
		u = DefaultURL
	}
	p, _ := probes.LoadOrStore(u, &probe{})
	pr := p.(*probe)
	pr.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), reachTimeout)
		defer cancel()
		conn, err := pgx.Connect(ctx, u)
		if err == nil {
			err = conn.Ping(ctx)
			_ = conn.Close(ctx)
		}
		pr.err = err
	})
	if pr.err != nil {
		msg := fmt.Sprintf("PostgreSQL not reachable at %s (%v); set %s to a reachable server", redact(u), pr.err, EnvURL)
		if os.Getenv(EnvRequire) == "1" {
			t.Fatal(msg + " (" + EnvRequire + "=1, so this is a failure, not a skip)")
		}
		t.Skip(msg)
	}
	return u
}

// Schema creates a fresh, uniquely named schema (chronicle_test_<hex>), drops it with
// everything in it when t ends, and returns a URL whose connections use it: their
// search_path is that schema alone, so unqualified table names land there.
func Schema(t testing.TB) string {
	t.Helper()
	base := URL(t)
	var b [8]byte
	_, _ = rand.Read(b[:])
	name := "chronicle_test_" + hex.EncodeToString(b[:])

	exec := func(ctx context.Context, sql string) error {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create schema %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("pgtest: drop schema %s: %v", name, err)
		}
	})
	u, err := WithSearchPath(base, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u
}

// WithSearchPath returns connString with the server option "-c search_path=<schema>"
// added (libpq's "options" parameter, which pgx passes on in the startup message). It
// accepts both URL and keyword/value connection strings. schema must be a plain
// identifier (letters, digits, '_').
func WithSearchPath(connString, schema string) (string, error) {
	for _, c := range schema {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return "", fmt.Errorf("schema name %q must be letters, digits and '_'", schema)
		}
	}
	opt := "-c search_path=" + schema
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		u, err := url.Parse(connString)
		if err != nil {
			return "", fmt.Errorf("parse connection URL: %w", err)
		}
		q := u.Query()
		if old := q.Get("options"); old != "" {
			opt = old + " " + opt
		}
		q.Set("options", opt)
		// Encode writes a space as '+', which pgx (like libpq) does not decode: use %20.
		// A literal '+' is already %2B.
		u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
		return u.String(), nil
	}
	// Keyword/value form; a later keyword overrides an earlier one, so an existing
	// options setting would be lost: refuse rather than drop it quietly.
	if strings.Contains(connString, "options=") {
		return "", fmt.Errorf("connection string already sets options; use the URL form")
	}
	return connString + " options='" + opt + "'", nil
}

// redact hides a password in a URL for messages.
func redact(connString string) string {
	if u, err := url.Parse(connString); err == nil && u.Scheme != "" {
		return u.Redacted()
	}
	if strings.Contains(connString, "password") {
		return "(the connection string in " + EnvURL + ")"
	}
	return connString
}
