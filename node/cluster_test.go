package node_test

import (
	"net/http"
	"testing"

	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// TestClusterForwardsToLeader: a three-node cluster forms; a command sent to a follower
// is forwarded to the leader and every node then serves it.
func TestClusterForwardsToLeader(t *testing.T) {
	c := nodetest.StartCluster(t, 3)
	ctx := ctxT(t)
	l := c.Leader(t)
	f := (l + 1) % 3
	res, err := c.Nodes[f].Client.CreateAccount(ctx, client.CreateAccount{AccountID: "x", OwnerName: "X", Currency: "USD", InitialBalance: "7"}, "")
	if err != nil || res.Status != http.StatusCreated {
		t.Fatalf("create via follower: %+v, %v", res, err)
	}
	for i, n := range c.Nodes {
		a, err := n.Client.Account(ctx, "x", 0) // leader consistency: forwarded
		if err != nil || a.Balance != "7.00" {
			t.Fatalf("node %d: %+v, %v", i, a, err)
		}
		var loc client.Account
		if _, err := n.Client.Do(ctx, http.MethodGet, "/accounts/x?consistency=local&min_position=1", nil, nil, &loc); err != nil || loc.Balance != "7.00" {
			t.Fatalf("node %d local read: %+v, %v", i, loc, err)
		}
	}
}
