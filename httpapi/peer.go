package httpapi

import (
	"net/http"

	"github.com/chronicle-ledger/chronicle"
)

// CodePeerCertificateRequired answers a membership change from a caller without a
// client certificate of the cluster CA, when the cluster runs with TLS.
const CodePeerCertificateRequired = "peer_certificate_required"

// peerOnly guards a membership change, after require(RoleAdmin, true): when the cluster
// runs with TLS (cfg.PeerTLS), the caller must be a verified peer (PeerVerified) or
// have presented an admin token; the anonymous admin a node without tokens lets through
// is not enough. Otherwise it writes 401 and reports false. It runs before forwarding,
// as the leader sees the forwarding node's certificate, not the caller's.
func (a *API) peerOnly(w http.ResponseWriter, r *http.Request) bool {
	if a.cfg.PeerTLS == nil || PeerVerified(r) {
		return true
	}
	if p, ok := PrincipalFrom(r.Context()); ok && p.Name != "" && p.Role.Allows(chronicle.RoleAdmin) {
		return true
	}
	writeErrorStatus(w, http.StatusUnauthorized, CodePeerCertificateRequired,
		"cluster membership changes need a client certificate signed by the cluster CA (chronicle cluster join|remove --cert --key)")
	return false
}
