// Package pkitest writes a cluster CA and node certificates for tests.
package pkitest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/chronicle-ledger/chronicle/internal/pki"
)

// Files are the paths of a test cluster's CA and node certificates.
type Files struct {
	Dir    string
	CACert string
	CAKey  string
}

// Cert and Key are node name's certificate and key.
func (f Files) Cert(name string) string { return filepath.Join(f.Dir, name+".crt") }
func (f Files) Key(name string) string  { return filepath.Join(f.Dir, name+".key") }

// Peer loads node name's TLS identity.
func (f Files) Peer(t testing.TB, name string) *pki.Peer {
	t.Helper()
	p, err := pki.LoadPeer(f.CACert, f.Cert(name), f.Key(name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Write makes a CA in a temporary directory and a certificate for each of names, valid
// for 127.0.0.1 and localhost.
func Write(t testing.TB, names ...string) Files {
	t.Helper()
	dir := t.TempDir()
	ca, caPair, err := pki.NewCA("test cluster CA", pki.CAValidity)
	if err != nil {
		t.Fatal(err)
	}
	f := Files{Dir: dir, CACert: filepath.Join(dir, "ca.crt"), CAKey: filepath.Join(dir, "ca.key")}
	write(t, f.CACert, caPair.CertPEM)
	write(t, f.CAKey, caPair.KeyPEM)
	for _, n := range names {
		pair, err := ca.Issue(n, []string{"127.0.0.1", "localhost", n}, pki.NodeValidity)
		if err != nil {
			t.Fatal(err)
		}
		write(t, f.Cert(n), pair.CertPEM)
		write(t, f.Key(n), pair.KeyPEM)
	}
	return f
}

func write(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
