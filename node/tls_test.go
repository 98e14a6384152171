package node_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/internal/pki"
	"github.com/chronicle-ledger/chronicle/internal/pki/pkitest"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// tlsClient calls url trusting the cluster CA, presenting node name's certificate when
// name is not "".
func tlsClient(t *testing.T, certs pkitest.Files, url, name string) *client.Client {
	t.Helper()
	cert, key := "", ""
	if name != "" {
		cert, key = certs.Cert(name), certs.Key(name)
	}
	tc, err := pki.ClientConfig(certs.CACert, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return client.New(url, &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}})
}

// TestTLSCluster: three nodes with cluster TLS form a cluster over mutual TLS and serve
// HTTPS; a write on a follower is forwarded to the leader over HTTPS; membership changes
// without a client certificate are refused with 401 peer_certificate_required, and with
// a node certificate a node is removed, and a new node joins (asking over HTTPS itself).
func TestTLSCluster(t *testing.T) {
	certs := pkitest.Write(t, "n1", "n2", "n3", "n4")
	c := nodetest.StartCluster(t, 3, nodetest.WithTLS(certs))
	ctx := ctxT(t)
	for i, n := range c.Nodes {
		if !strings.HasPrefix(n.URL(), "https://") || !strings.HasPrefix(n.APIURL(), "https://") {
			t.Fatalf("node %d serves at %s, advertises %s: want https", i, n.URL(), n.APIURL())
		}
	}
	l := c.Leader(t)
	f := (l + 1) % 3
	res, err := c.Nodes[f].Client.CreateAccount(ctx, client.CreateAccount{AccountID: "x", OwnerName: "X", Currency: "USD", InitialBalance: "7"}, "")
	if err != nil || res.Status != http.StatusCreated {
		t.Fatalf("create via follower over HTTPS: %+v, %v", res, err)
	}
	for i, n := range c.Nodes {
		var a client.Account
		if _, err := n.Client.Do(ctx, http.MethodGet, "/accounts/x?consistency=local&min_position="+u64s(res.Position), nil, nil, &a); err != nil || a.Balance != "7.00" {
			t.Fatalf("node %d local read: %+v, %v", i, a, err)
		}
	}

	// Plain HTTP to an HTTPS port gets nowhere.
	if _, err := client.New(strings.Replace(c.Nodes[f].URL(), "https://", "http://", 1), nil).Account(ctx, "x", 0); err == nil {
		t.Error("plain HTTP to the TLS API answered")
	}

	// Without a client certificate (as a browser or curl --cacert): refused, on a
	// follower and on the leader, before anything is forwarded or changed.
	for _, i := range []int{l, f} {
		anon := c.Nodes[i].Client
		_, err := anon.Do(ctx, http.MethodPost, "/cluster/join", []byte(`{"node_id":"evil","raft_addr":"127.0.0.1:1"}`), nil, nil)
		if st, code := apiStatus(err); st != http.StatusUnauthorized || code != "peer_certificate_required" {
			t.Errorf("join without a certificate via node %d: %v", i, err)
		}
		_, err = anon.Do(ctx, http.MethodDelete, "/cluster/nodes/n1", nil, nil, nil)
		if st, code := apiStatus(err); st != http.StatusUnauthorized || code != "peer_certificate_required" {
			t.Errorf("remove without a certificate via node %d: %v", i, err)
		}
	}
	// A certificate of another CA does not even get a TLS connection.
	other := pkitest.Write(t, "n1")
	otherTC, err := pki.ClientConfig(certs.CACert, other.Cert("n1"), other.Key("n1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.New(c.Nodes[f].URL(), &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: otherTC}}).
		Do(ctx, http.MethodDelete, "/cluster/nodes/n1", nil, nil, nil); err == nil || client.CodeOf(err) != "" {
		t.Errorf("remove with another CA's certificate: %v, want a TLS failure", err)
	}
	cfEventually(t, 15*time.Second, "the three members, reachable over HTTPS, after the refused changes", func() error {
		return cfMembers(ctx, c.Nodes[l].Client, []string{"n1", "n2", "n3"}, true)
	})

	// With a node certificate, through a follower (forwarded to the leader over HTTPS,
	// the leader seeing the follower's certificate).
	victim := 3 - l - f // the third node
	victimID := c.Config(victim).NodeID
	var out struct {
		Success bool   `json:"success"`
		Removed string `json:"removed"`
	}
	peer := tlsClient(t, certs, c.Nodes[f].URL(), c.Config(f).NodeID)
	cfRetry(t, 15*time.Second, "DELETE /cluster/nodes/"+victimID+" with a node certificate", func(ctx context.Context) error {
		_, err := peer.Do(ctx, http.MethodDelete, "/cluster/nodes/"+victimID, nil, nil, &out)
		return err
	})
	if !out.Success || out.Removed != victimID {
		t.Fatalf("remove %s: %+v", victimID, out)
	}
	c.Stop(t, victim)

	// A new node joins by itself over HTTPS, presenting its certificate.
	var join []string
	for i, n := range c.Nodes {
		if i != victim {
			join = append(join, n.URL())
		}
	}
	cfg := node.Config{NodeID: "n4", DataDir: t.TempDir(), HTTPAddr: nodetest.FreeAddr(t), RaftAddr: nodetest.FreeAddr(t),
		Join: join, Logger: nodetest.Logger()}
	nodetest.WithTLS(certs)(&cfg)
	n4 := nodetest.Launch(t, cfg)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := n4.WaitReady(wctx); err != nil {
		t.Fatalf("n4 not ready: %v", err)
	}
	members := []string{c.Config(l).NodeID, c.Config(f).NodeID, "n4"}
	sort.Strings(members)
	cfEventually(t, 15*time.Second, "GET /cluster lists the members, all reachable over HTTPS", func() error {
		return cfMembers(ctx, n4.Client, members, true)
	})
	var a client.Account
	if _, err := n4.Client.Do(ctx, http.MethodGet, "/accounts/x?consistency=local&min_position="+u64s(res.Position), nil, nil, &a); err != nil || a.Balance != "7.00" {
		t.Fatalf("n4 local read: %+v, %v", a, err)
	}
	if _, err := n4.Client.Deposit(ctx, client.Money{AccountID: "x", Amount: "1"}, ""); err != nil {
		t.Fatalf("deposit via n4: %v", err)
	}
}

func apiStatus(err error) (int, string) {
	if e, ok := err.(*client.APIError); ok {
		return e.Status, e.Code
	}
	return 0, ""
}

func u64s(v uint64) string { return strconv.FormatUint(v, 10) }

// TestTLSConfigRefused: a node does not start with only some of the TLS files, or with
// files it cannot read or that do not belong together, and says which.
func TestTLSConfigRefused(t *testing.T) {
	certs := pkitest.Write(t, "n1")
	other := pkitest.Write(t, "n1")
	unreadable := filepath.Join(t.TempDir(), "n1.key")
	if err := os.WriteFile(unreadable, []byte("x"), 0o000); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name          string
		ca, cert, key string
		want          string
	}{
		{"cert and key without CA", "", certs.Cert("n1"), certs.Key("n1"), "--tls-cert, --tls-key given without --tls-ca"},
		{"CA only", certs.CACert, "", "", "--tls-ca given without --tls-cert, --tls-key"},
		{"missing file", certs.CACert, certs.Cert("n1"), filepath.Join(t.TempDir(), "nope.key"), "nope.key"},
		{"not a key", certs.CACert, certs.Cert("n1"), certs.CACert, "tls certificate and key"},
		{"another CA", other.CACert, certs.Cert("n1"), certs.Key("n1"), "does not verify against the CA"},
	}
	if os.Geteuid() != 0 { // root reads any file
		cases = append(cases, struct {
			name          string
			ca, cert, key string
			want          string
		}{"unreadable key", certs.CACert, certs.Cert("n1"), unreadable, "permission denied"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := node.New(context.Background(), node.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
				TLSCAFile: tc.ca, TLSCertFile: tc.cert, TLSKeyFile: tc.key, Logger: nodetest.Logger()})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// TestTLSMembershipPeerOrAdminToken: with tokens and cluster TLS, a membership change
// needs a verified peer certificate or an admin token: an anonymous caller and a reader
// token are refused; an admin token without a certificate, and a node certificate
// without a token, get through to the membership check (n9 is not a member: 404).
func TestTLSMembershipPeerOrAdminToken(t *testing.T) {
	certs := pkitest.Write(t, "n1")
	file := filepath.Join(t.TempDir(), "token")
	n := nodetest.Start(t, nodetest.WithTLS(certs), withBootstrapToken(file))
	admin := n.Client.WithToken(readSecret(t, file))
	waitToken(t, admin) // the leader creates the bootstrap token once it leads
	ctx := ctxT(t)
	reader, err := admin.CreateToken(ctx, "viewer", "reader")
	if err != nil {
		t.Fatal(err)
	}
	waitToken(t, n.Client.WithToken(reader.Secret))
	peer := tlsClient(t, certs, n.URL(), "n1")
	for _, c := range []struct {
		who  string
		c    *client.Client
		want int
	}{
		{"anonymous", n.Client, http.StatusUnauthorized},
		{"reader token", n.Client.WithToken(reader.Secret), http.StatusForbidden},
		{"admin token", admin, http.StatusNotFound},
		{"node certificate", peer, http.StatusNotFound},
	} {
		code, errCode := status(t, c.c, http.MethodDelete, "/cluster/nodes/n9", "")
		if code != c.want {
			t.Errorf("%s: DELETE /cluster/nodes/n9: %d %s, want %d", c.who, code, errCode, c.want)
		}
	}
}
