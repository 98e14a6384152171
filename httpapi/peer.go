package httpapi

import (
	"net/http"
)

// CodePeerCertificateRequired answers a membership change from a caller without a
// client certificate of the cluster CA, when the cluster runs with TLS.
const CodePeerCertificateRequired = "peer_certificate_required"

// PeerVerified reports whether the request came over TLS with a client certificate that
// verified against the cluster CA: it comes from a cluster member (or whoever holds a
// certificate the cluster CA signed). The API's TLS configuration asks for client
// certificates without requiring them and refuses a connection whose certificate does
// not verify, so a non-empty VerifiedChains means a verified peer.
func PeerVerified(r *http.Request) bool {
	return r.TLS != nil && len(r.TLS.VerifiedChains) > 0
}

// peerOnly guards a membership change: when the cluster runs with TLS (cfg.PeerTLS), the
// caller must be a verified peer; otherwise it writes 401 and reports false. It runs
// before forwarding, as the leader sees the forwarding node's certificate, not the
// caller's.
func (a *API) peerOnly(w http.ResponseWriter, r *http.Request) bool {
	if a.cfg.PeerTLS == nil || PeerVerified(r) {
		return true
	}
	writeErrorStatus(w, http.StatusUnauthorized, CodePeerCertificateRequired,
		"cluster membership changes need a client certificate signed by the cluster CA (chronicle cluster join|remove --cert --key)")
	return false
}
