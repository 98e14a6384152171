package httpapi

import (
	"crypto/tls"
	"crypto/x509"
	"net/http/httptest"
	"testing"
)

func TestPeerVerified(t *testing.T) {
	r := httptest.NewRequest("POST", "/cluster/join", nil)
	if PeerVerified(r) {
		t.Error("plain HTTP is a verified peer")
	}
	r.TLS = &tls.ConnectionState{}
	if PeerVerified(r) {
		t.Error("TLS without a client certificate is a verified peer")
	}
	r.TLS.VerifiedChains = [][]*x509.Certificate{{{}}}
	if !PeerVerified(r) {
		t.Error("a verified client certificate is not a verified peer")
	}
}
