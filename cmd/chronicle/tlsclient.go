package main

import (
	"flag"
	"fmt"
	"net/http"
	"time"

	"github.com/chronicle-ledger/chronicle/internal/pki"
)

// clientTLS holds the flags with which a command talks to a node serving HTTPS (one
// started with --tls-ca, --tls-cert, --tls-key).
type clientTLS struct {
	cacert, cert, key string
}

// addClientTLSFlags adds --cacert and, with withCert, --cert and --key (a client
// certificate signed by the cluster CA, which membership changes need).
func addClientTLSFlags(fs *flag.FlagSet, withCert bool) *clientTLS {
	c := &clientTLS{}
	fs.StringVar(&c.cacert, "cacert", "", "CA certificate to verify an https:// node with (the cluster's ca.crt); default: the system's roots")
	if withCert {
		fs.StringVar(&c.cert, "cert", "", "client certificate to present (a node certificate of the cluster CA: membership changes need one when the cluster runs TLS)")
		fs.StringVar(&c.key, "key", "", "private key of --cert")
	}
	return c
}

// transport is an HTTP transport that trusts --cacert and presents --cert; base, when
// not nil, is cloned for its other settings.
func (c *clientTLS) transport(base *http.Transport) (*http.Transport, error) {
	if base == nil {
		base = http.DefaultTransport.(*http.Transport)
	}
	tr := base.Clone()
	if c.cacert == "" && c.cert == "" && c.key == "" {
		return tr, nil
	}
	tc, err := pki.ClientConfig(c.cacert, c.cert, c.key)
	if err != nil {
		return nil, err
	}
	tr.TLSClientConfig = tc
	return tr, nil
}

// client is an HTTP client with timeout for the flags.
func (c *clientTLS) client(timeout time.Duration) (*http.Client, error) {
	tr, err := c.transport(nil)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return &http.Client{Timeout: timeout, Transport: tr}, nil
}
