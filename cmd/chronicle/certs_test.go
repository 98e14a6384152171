package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle/internal/pki"
	"github.com/chronicle-ledger/chronicle/internal/pki/pkitest"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code = run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// certs ca and certs node write a CA and a node certificate that verifies against it
// for server and client auth with the hosts as SANs; keys are 0600; nothing is
// overwritten without --force.
func TestCertsCANode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if code, out, errOut := runCmd(t, "certs", "ca", "--out", dir); code != 0 || !strings.Contains(out, filepath.Join(dir, "ca.crt")) {
		t.Fatalf("certs ca: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut := runCmd(t, "certs", "node", "--ca-dir", dir, "--name", "n1", "--hosts", "127.0.0.1,localhost,n1", "--out", dir)
	if code != 0 || !strings.Contains(out, filepath.Join(dir, "n1.crt")) {
		t.Fatalf("certs node: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for name, want := range map[string]os.FileMode{"ca.key": 0o600, "n1.key": 0o600, "ca.crt": 0o644, "n1.crt": 0o644} {
		if m := fileMode(t, filepath.Join(dir, name)); m != want {
			t.Errorf("%s mode %v, want %v", name, m, want)
		}
	}
	ca, leaf := readCert(t, filepath.Join(dir, "ca.crt")), readCert(t, filepath.Join(dir, "n1.crt"))
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		for _, host := range []string{"127.0.0.1", "localhost", "n1"} {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
				t.Errorf("n1.crt for %s, usage %v: %v", host, u, err)
			}
		}
	}
	if len(leaf.IPAddresses) != 1 || leaf.IPAddresses[0].String() != "127.0.0.1" || strings.Join(leaf.DNSNames, ",") != "localhost,n1" {
		t.Errorf("SANs: IPs %v, DNS %q", leaf.IPAddresses, leaf.DNSNames)
	}
	if time.Until(ca.NotAfter) < 9*365*24*time.Hour || time.Until(leaf.NotAfter) > 731*24*time.Hour {
		t.Errorf("validity: CA until %s, node until %s", ca.NotAfter, leaf.NotAfter)
	}
	if _, err := pki.LoadPeer(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "n1.crt"), filepath.Join(dir, "n1.key")); err != nil {
		t.Errorf("the files do not load as a node's TLS: %v", err)
	}

	// No overwrite without --force.
	caBefore, _ := os.ReadFile(filepath.Join(dir, "ca.key"))
	if code, _, errOut := runCmd(t, "certs", "ca", "--out", dir); code != 1 || !strings.Contains(errOut, "without --force") {
		t.Errorf("certs ca over an existing CA: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, "certs", "node", "--ca-dir", dir, "--name", "n1", "--hosts", "n1", "--out", dir); code != 1 || !strings.Contains(errOut, "without --force") {
		t.Errorf("certs node over an existing node: exit %d, stderr %q", code, errOut)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "ca.key")); !bytes.Equal(after, caBefore) {
		t.Error("the CA key changed without --force")
	}
	if err := os.Chmod(filepath.Join(dir, "n1.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCmd(t, "certs", "node", "--ca-dir", dir, "--name", "n1", "--hosts", "n1", "--out", dir, "--force"); code != 0 {
		t.Fatalf("certs node --force: exit %d, stderr %q", code, errOut)
	}
	if m := fileMode(t, filepath.Join(dir, "n1.key")); m != 0o600 {
		t.Errorf("overwritten key mode %v", m)
	}
	// Usage errors.
	if code, _, _ := runCmd(t, "certs", "node", "--ca-dir", dir, "--out", dir); code != 2 {
		t.Errorf("certs node without --name: exit %d", code)
	}
	if code, _, errOut := runCmd(t, "certs", "node", "--ca-dir", t.TempDir(), "--name", "n2", "--hosts", "n2", "--out", dir); code != 1 || !strings.Contains(errOut, "chronicle certs ca") {
		t.Errorf("certs node without a CA: exit %d, stderr %q", code, errOut)
	}
}

// certs cluster makes what is missing and keeps the rest, so a restart reuses them.
func TestCertsCluster(t *testing.T) {
	dir := t.TempDir()
	args := []string{"certs", "cluster", "--out", dir, "--node", "n1=127.0.0.1,localhost,n1", "--node", "n2=127.0.0.1,n2"}
	if code, _, errOut := runCmd(t, args...); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "n1.crt"))
	code, out, errOut := runCmd(t, append(args, "--node", "n3=n3")...)
	if code != 0 || !strings.Contains(out, "keeping") || !strings.Contains(out, "n3.crt") {
		t.Fatalf("second run: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "n1.crt")); !bytes.Equal(before, after) {
		t.Error("n1.crt was rewritten")
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		if _, err := pki.LoadPeer(filepath.Join(dir, "ca.crt"), filepath.Join(dir, n+".crt"), filepath.Join(dir, n+".key")); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	if code, _, _ := runCmd(t, "certs", "cluster", "--out", dir, "--node", "bad name=x"); code != 1 {
		t.Errorf("bad node name: exit %d", code)
	}
}

// serve refuses to start with only some of the TLS flags, or with files it cannot use,
// and says why.
func TestServeTLSFlagsRefused(t *testing.T) {
	certs := pkitest.Write(t, "n1")
	base := []string{"serve", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", certs.Cert("n1"), "--tls-key", certs.Key("n1")}, "--tls-cert, --tls-key given without --tls-ca"},
		{[]string{"--tls-ca", certs.CACert}, "--tls-ca given without --tls-cert, --tls-key"},
		{[]string{"--tls-ca", certs.CACert, "--tls-cert", certs.Cert("n1"), "--tls-key", filepath.Join(t.TempDir(), "missing.key")}, "missing.key: no such file"},
		{[]string{"--tls-ca", certs.Cert("n1"), "--tls-cert", certs.Cert("n1"), "--tls-key", certs.Key("n1")}, "is not a CA certificate"},
	} {
		code, _, errOut := runCmd(t, append(base, c.args...)...)
		if code != 1 || !strings.Contains(errOut, c.want) {
			t.Errorf("serve %q: exit %d, stderr %q, want %q", c.args, code, errOut, c.want)
		}
	}
}

// health, cluster status and cluster remove talk to an HTTPS node with --cacert, and
// cluster remove needs --cert/--key when the cluster runs TLS.
func TestCLIOverTLS(t *testing.T) {
	certs := pkitest.Write(t, "n1")
	n := nodetest.Start(t, nodetest.WithTLS(certs))
	if code, _, errOut := runCmd(t, "health", "--url", n.URL()); code != 1 || !strings.Contains(errOut, "certificate") {
		t.Errorf("health without --cacert: exit %d, stderr %q", code, errOut)
	}
	if code, out, errOut := runCmd(t, "health", "--url", n.URL(), "--cacert", certs.CACert); code != 0 {
		t.Errorf("health --cacert: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, out, errOut := runCmd(t, "cluster", "status", "--url", n.URL(), "--cacert", certs.CACert); code != 0 || !strings.Contains(out, "n1") {
		t.Errorf("cluster status --cacert: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut := runCmd(t, "cluster", "remove", "--url", n.URL(), "--cacert", certs.CACert, "n9")
	if code != 1 || !strings.Contains(errOut, "peer_certificate_required") {
		t.Errorf("cluster remove without a certificate: exit %d, stderr %q", code, errOut)
	}
	// With the node's certificate the request gets through to the membership check.
	code, _, errOut = runCmd(t, "cluster", "remove", "--url", n.URL(), "--cacert", certs.CACert, "--cert", certs.Cert("n1"), "--key", certs.Key("n1"), "n9")
	if code != 1 || !strings.Contains(errOut, "not a member") {
		t.Errorf("cluster remove of an unknown node with a certificate: exit %d, stderr %q", code, errOut)
	}
	if code, out, errOut := runCmd(t, "verify", "--url", n.URL(), "--cacert", certs.CACert); code != 0 {
		t.Errorf("verify --cacert: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
