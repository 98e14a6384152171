// Package pki is the cluster's certificate authority and mutual TLS: it makes a CA and
// node certificates (ECDSA P-256, standard library only) for `chronicle certs` and the
// tests, and loads a node's CA, certificate and key into the TLS configurations Raft
// and the HTTP API use.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"time"
)

// Default validities: a CA outlives many node certificates.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	NodeValidity = 2 * 365 * 24 * time.Hour
)

// CA is a certificate authority: its certificate and private key.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// Pair is a certificate and its private key, PEM-encoded.
type Pair struct {
	CertPEM []byte
	KeyPEM  []byte
}

// NewCA makes a self-signed CA named name, valid for validity from now.
func NewCA(name string, validity time.Duration) (*CA, Pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, Pair{}, fmt.Errorf("pki: generate CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, Pair{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Chronicle Ledger"}},
		NotBefore:             now.Add(-time.Hour), // tolerate clocks a little behind
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // signs node certificates only, never another CA
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, Pair{}, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, Pair{}, fmt.Errorf("pki: parse CA certificate: %w", err)
	}
	pair, err := encodePair(der, key)
	if err != nil {
		return nil, Pair{}, err
	}
	return &CA{Cert: cert, Key: key}, pair, nil
}

// Issue makes a node certificate for name, signed by ca, usable both as a server and as
// a client (every node is both to its peers). Each of hosts becomes a SAN: an IP address
// as an IP SAN, anything else as a DNS name.
func (ca *CA) Issue(name string, hosts []string, validity time.Duration) (Pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, fmt.Errorf("pki: generate key for %s: %w", name, err)
	}
	serial, err := serialNumber()
	if err != nil {
		return Pair{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"Chronicle Ledger"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		switch ip := net.ParseIP(h); {
		case h == "":
		case ip != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return Pair{}, fmt.Errorf("pki: create certificate for %s: %w", name, err)
	}
	return encodePair(der, key)
}

// ParseCA reads a CA from its PEM certificate and key.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate and key: %w", err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("pki: parse CA certificate: %w", err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || !cert.IsCA {
		return nil, errors.New("pki: not an ECDSA CA certificate and key (make one with chronicle certs ca)")
	}
	return &CA{Cert: cert, Key: key}, nil
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("pki: serial number: %w", err)
	}
	return n, nil
}

func encodePair(der []byte, key *ecdsa.PrivateKey) (Pair, error) {
	k, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Pair{}, fmt.Errorf("pki: encode key: %w", err)
	}
	return Pair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k}),
	}, nil
}

// Peer is a node's TLS identity in its cluster: the cluster CA it trusts and the
// certificate it presents.
type Peer struct {
	roots *x509.CertPool
	cert  tls.Certificate
}

// LoadPeer reads the cluster CA certificate and this node's certificate and key. Each
// error names the file at fault.
func LoadPeer(caFile, certFile, keyFile string) (*Peer, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tls CA: %w", err)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls key: %w", err)
	}
	p, err := NewPeer(caPEM, certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w (CA %s, certificate %s, key %s)", err, caFile, certFile, keyFile)
	}
	return p, nil
}

// NewPeer builds a Peer from PEM bytes. The certificate must chain to the CA and be
// usable as both server and client, as every node is both.
func NewPeer(caPEM, certPEM, keyPEM []byte) (*Peer, error) {
	roots, err := caPool(caPEM)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls certificate and key: %w", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	inter := x509.NewCertPool()
	for _, c := range cert.Certificate[1:] {
		if ic, err := x509.ParseCertificate(c); err == nil {
			inter.AddCert(ic)
		}
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			return nil, fmt.Errorf("tls certificate %q does not verify against the CA for %s: %w", leaf.Subject.CommonName, usageName(usage), err)
		}
	}
	cert.Leaf = leaf
	return &Peer{roots: roots, cert: cert}, nil
}

// caPool parses the CA file. Every certificate in it must be a CA: Go trusts whatever
// the pool holds, so a node certificate given as --tls-ca by mistake would quietly pin
// that one certificate instead of trusting the cluster.
func caPool(caPEM []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := caPEM; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tls CA: %w", err)
		}
		if !c.IsCA || !c.BasicConstraintsValid {
			return nil, fmt.Errorf("tls CA: %q is not a CA certificate (give the cluster's ca.crt)", c.Subject.CommonName)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, errors.New("tls CA: no PEM certificate in it")
	}
	return pool, nil
}

func usageName(u x509.ExtKeyUsage) string {
	if u == x509.ExtKeyUsageServerAuth {
		return "server auth"
	}
	return "client auth"
}

// Roots is the cluster CA as a pool.
func (p *Peer) Roots() *x509.CertPool { return p.roots }

// RaftServer is the Raft listener's configuration: TLS 1.3, and a client certificate
// signed by the cluster CA required before anything else is read.
func (p *Peer) RaftServer() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{p.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.roots,
	}
}

// RaftClient is the configuration Raft dials peers with: it presents this node's
// certificate and accepts a server whose certificate chains to the cluster CA.
//
// The server's name is not checked: Raft dials the IP address a peer's --raft-addr
// resolved to when it started, which a certificate made for a name need not list, and
// the cluster CA signs cluster members only, so a valid chain is what proves a member.
func (p *Peer) RaftClient() *tls.Config {
	roots := p.roots
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{p.cert},
		// The chain is verified below, without a host name (see above).
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("raft peer presented no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if err != nil {
				return fmt.Errorf("raft peer certificate: %w", err)
			}
			return nil
		},
	}
}

// HTTPServer is the API's configuration: it asks for a client certificate but does not
// require one (browsers, curl --cacert and API clients have none); a certificate given
// must chain to the cluster CA, and then the request comes from a peer.
func (p *Peer) HTTPServer() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{p.cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    p.roots,
	}
}

// HTTPClient is the configuration for calling a peer's API: the peer's name is checked
// against the cluster CA, and this node presents its certificate (membership changes
// need it).
func (p *Peer) HTTPClient() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		RootCAs:      p.roots,
		Certificates: []tls.Certificate{p.cert},
	}
}

// ClientConfig is a CLI's configuration for an HTTPS node: caFile (if given) replaces
// the system roots, and certFile and keyFile (both or neither) are presented as a
// client certificate, which membership changes need.
func ClientConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		caPEM, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("--cacert %s: no PEM certificate in it", caFile)
		}
	}
	switch {
	case certFile == "" && keyFile == "":
	case certFile == "" || keyFile == "":
		return nil, errors.New("--cert and --key go together")
	default:
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--cert %s, --key %s: %w", certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
