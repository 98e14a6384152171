package pki

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func parsePEM(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A node certificate verifies against its CA as a server and as a client, carries its
// hosts as SANs, and a certificate of another CA does not verify.
func TestIssueVerifiesForBothUsages(t *testing.T) {
	ca, caPair, err := NewCA("test CA", CAValidity)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Cert.IsCA || time.Until(ca.Cert.NotAfter) < 9*365*24*time.Hour {
		t.Fatalf("CA: IsCA %v, NotAfter %s", ca.Cert.IsCA, ca.Cert.NotAfter)
	}
	pair, err := ca.Issue("n1", []string{"127.0.0.1", "localhost", "n1", "::1"}, NodeValidity)
	if err != nil {
		t.Fatal(err)
	}
	leaf := parsePEM(t, pair.CertPEM)
	roots := x509.NewCertPool()
	roots.AddCert(parsePEM(t, caPair.CertPEM))
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			t.Errorf("usage %v: %v", u, err)
		}
	}
	for _, name := range []string{"localhost", "n1", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("host %s: %v", name, err)
		}
	}
	if !slices.Equal(leaf.DNSNames, []string{"localhost", "n1"}) {
		t.Errorf("DNS SANs %q", leaf.DNSNames)
	}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Errorf("IP SANs %v", leaf.IPAddresses)
	}
	if d := time.Until(leaf.NotAfter); d < 700*24*time.Hour || d > 731*24*time.Hour {
		t.Errorf("node certificate valid for %s", d)
	}
	if _, err := NewPeer(caPair.CertPEM, pair.CertPEM, pair.KeyPEM); err != nil {
		t.Errorf("NewPeer: %v", err)
	}

	_, otherPair, err := NewCA("other CA", CAValidity)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewPeer(otherPair.CertPEM, pair.CertPEM, pair.KeyPEM); err == nil || !strings.Contains(err.Error(), "does not verify against the CA") {
		t.Errorf("a certificate of another CA: %v", err)
	}
	back, err := ParseCA(caPair.CertPEM, caPair.KeyPEM)
	if err != nil || !back.Cert.Equal(ca.Cert) {
		t.Errorf("ParseCA: %v", err)
	}
	if _, err := ParseCA(pair.CertPEM, pair.KeyPEM); err == nil {
		t.Error("ParseCA took a node certificate")
	}
}
