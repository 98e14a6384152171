package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/httpapi"
	"github.com/chronicle-ledger/chronicle/raftstore"
)

var _ httpapi.Cluster = (*Node)(nil)

// NodeID implements httpapi.Cluster.
func (n *Node) NodeID() string { return n.cfg.NodeID }

// IsLeader implements httpapi.Cluster.
func (n *Node) IsLeader() bool { return n.store.IsLeader() }

// LeaderURL implements httpapi.Cluster: the leader's registered API URL.
func (n *Node) LeaderURL(ctx context.Context) (string, error) {
	// A node with damaged storage has left Raft and knows no leader: tell the client why,
	// not that there is no leader.
	if err := n.store.Fault(); err != nil {
		return "", err
	}
	id := n.store.LeaderID()
	if id == "" {
		return "", chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeNoLeader, "no leader is elected; retry shortly")
	}
	if id == n.cfg.NodeID {
		return n.APIURL(), nil
	}
	m, ok, err := n.store.NodeMeta(id)
	if err != nil {
		return "", fmt.Errorf("node: look up leader %s: %w", id, err)
	}
	if !ok || m.APIURL == "" {
		return "", chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeNoLeader, "the leader %s has not registered its API address yet", id)
	}
	return m.APIURL, nil
}

// LeaderBarrier implements httpapi.Cluster.
func (n *Node) LeaderBarrier(ctx context.Context) error { return n.store.LeaderBarrier(ctx) }

// VerifyLeader implements httpapi.Cluster.
func (n *Node) VerifyLeader(ctx context.Context) error { return n.store.VerifyLeader(ctx) }

// Join implements httpapi.Cluster.
func (n *Node) Join(ctx context.Context, id, raftAddr, apiURL string) error {
	return n.store.Join(ctx, id, raftAddr, apiURL)
}

// Remove implements httpapi.Cluster.
func (n *Node) Remove(ctx context.Context, id string) error { return n.store.Remove(ctx, id) }

// APIURL is the URL other nodes and clients reach this node's API at.
func (n *Node) APIURL() string {
	if n.cfg.AdvertiseURL != "" {
		return strings.TrimRight(n.cfg.AdvertiseURL, "/")
	}
	return n.URL()
}

// NodeInfo is one node's own view of itself (GET /cluster/info).
type NodeInfo struct {
	raftstore.Status
	RaftAddr  string `json:"raft_addr"`
	APIURL    string `json:"api_url"`
	HasState  bool   `json:"has_state"`
	Ready     bool   `json:"ready"`
	Projector any    `json:"projector"`
}

// Info implements httpapi.Cluster.
func (n *Node) Info(ctx context.Context) any { return n.info() }

func (n *Node) info() NodeInfo {
	return NodeInfo{Status: n.store.Status(), RaftAddr: n.store.RaftAddr(), APIURL: n.APIURL(),
		HasState: n.store.HasState() || n.store.LeaderID() != "", Ready: n.store.Ready(), Projector: n.ViewStatus()}
}

// MemberView is a member of the cluster as GET /cluster shows it.
type MemberView struct {
	raftstore.Server
	Reachable bool      `json:"reachable"`
	Info      *NodeInfo `json:"info,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// Overview implements httpapi.Cluster: the configuration, with each member's own report.
func (n *Node) Overview(ctx context.Context) (any, error) {
	servers, err := n.store.Servers()
	if err != nil {
		return nil, err
	}
	self := n.info()
	members := make([]MemberView, len(servers))
	var wg sync.WaitGroup
	for i, srv := range servers {
		members[i] = MemberView{Server: srv}
		if srv.ID == n.cfg.NodeID {
			members[i].Reachable, members[i].Info = true, &self
			continue
		}
		if srv.APIURL == "" {
			members[i].Error = "no API address registered"
			continue
		}
		wg.Add(1)
		go func(m *MemberView) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			var info NodeInfo
			if err := n.getJSON(ctx, m.APIURL+"/cluster/info", &info); err != nil {
				m.Error = err.Error()
				return
			}
			m.Reachable, m.Info = true, &info
		}(&members[i])
	}
	wg.Wait()
	return map[string]any{"node_id": n.cfg.NodeID, "leader": n.store.LeaderID(), "term": self.Term, "nodes": members}, nil
}

func (n *Node) getJSON(ctx context.Context, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := n.peers.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// form joins or founds a cluster when this node has no Raft state yet: with
// --bootstrap-expect it waits until that many nodes (itself included) answer at the
// --join addresses and then all found the cluster together; with only --join it asks to
// be admitted. A node with state simply rejoins with it.
func (n *Node) form(ctx context.Context) {
	cfg := n.cfg
	if n.store.HasState() || len(cfg.Join) == 0 {
		return
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if n.store.Suffrage(n.cfg.NodeID) == "Voter" {
			n.clearRepair()
			return // admitted (or founded) meanwhile
		}
		var err error
		if cfg.BootstrapExpect > 1 {
			err = n.tryBootstrap(ctx)
		} else {
			err = n.tryJoin(ctx, cfg.Join)
		}
		if err == nil {
			n.clearRepair()
			return
		}
		n.log.Info("waiting to form or join the cluster", "err", err, "retry", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 3*time.Second)
	}
}

// joinProgress implements raftstore.Config.Progress: on the leader, it asks a joining
// node's API how far that node has applied the log.
func (n *Node) joinProgress(ctx context.Context, id, apiURL string) (raftstore.JoinProgress, error) {
	var info NodeInfo
	if err := n.getJSON(ctx, strings.TrimRight(apiURL, "/")+"/cluster/info", &info); err != nil {
		return raftstore.JoinProgress{}, fmt.Errorf("ask node %s how far it got: %w", id, err)
	}
	return raftstore.JoinProgress{NodeID: info.NodeID, Leader: info.Leader, Applied: info.RaftApplied}, nil
}

// tryJoin asks each peer in turn to admit this node.
func (n *Node) tryJoin(ctx context.Context, peers []string) error {
	body, _ := json.Marshal(map[string]string{"node_id": n.cfg.NodeID, "raft_addr": n.store.RaftAddr(), "api_url": n.APIURL()})
	var errs []string
	for _, peer := range peers {
		peer = strings.TrimRight(peer, "/")
		if peer == n.APIURL() {
			continue
		}
		// The leader answers once this node has caught up (or its admission failed).
		reqCtx, cancel := context.WithTimeout(ctx, n.cfg.joinTimeout()+5*time.Second)
		req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, peer+"/cluster/join", bytes.NewReader(body))
		if err != nil {
			cancel()
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if n.bootSecret != "" {
			req.Header.Set("Authorization", "Bearer "+n.bootSecret)
		}
		resp, err := n.peers.Do(req)
		cancel()
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			n.log.Info("joined the cluster", "via", peer)
			return nil
		}
		errs = append(errs, peer+": "+resp.Status+": "+strings.TrimSpace(string(msg)))
	}
	return fmt.Errorf("join: %s", strings.Join(errs, "; "))
}

// tryBootstrap gathers the founding members from the --join addresses; once
// --bootstrap-expect of them answer, every one of them founds the same configuration.
func (n *Node) tryBootstrap(ctx context.Context) error {
	servers := map[string]raftstore.Server{n.cfg.NodeID: {ID: n.cfg.NodeID, RaftAddr: n.store.RaftAddr(), APIURL: n.APIURL()}}
	for _, peer := range n.cfg.Join {
		peer = strings.TrimRight(peer, "/")
		if peer == n.APIURL() {
			continue
		}
		reqCtx, cancel := context.WithTimeout(ctx, time.Second)
		var info NodeInfo
		err := n.getJSON(reqCtx, peer+"/cluster/info", &info)
		cancel()
		if err != nil {
			continue
		}
		if info.HasState {
			// A cluster already exists: ask to be admitted to it instead.
			return n.tryJoin(ctx, n.cfg.Join)
		}
		servers[info.NodeID] = raftstore.Server{ID: info.NodeID, RaftAddr: info.RaftAddr, APIURL: info.APIURL}
	}
	if len(servers) < n.cfg.BootstrapExpect {
		return fmt.Errorf("bootstrap: %d of %d nodes answer", len(servers), n.cfg.BootstrapExpect)
	}
	list := make([]raftstore.Server, 0, len(servers))
	for _, s := range servers {
		list = append(list, s)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	n.log.Info("founding the cluster", "members", len(list))
	return n.store.BootstrapWith(list)
}

// leadership registers this node's API URL each time it becomes leader, so followers
// can forward to it. A follower's own registration runs in its own goroutine: it calls
// the leader over HTTP, and a leader that just got cut off can hold that call for a
// whole request timeout, which must not delay registering this node when it wins the
// next election (followers could not forward to it meanwhile).
func (n *Node) leadership(ctx context.Context) {
	done := make(chan struct{})
	defer func() { <-done }()
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				n.ensureRegistered(ctx)
			}
		}
	}()
	ch := n.store.LeaderChanges()
	if n.store.IsLeader() {
		n.onLeader(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case leader := <-ch:
			if leader {
				n.onLeader(ctx)
			}
		}
	}
}

// ensureRegistered asks the leader to record this follower's API URL when the cluster
// does not know it yet (a founding member, or a node restarted at a new address), and
// to finish admitting it when it is still a non-voter (a leader that admitted it lost
// leadership before promoting it).
func (n *Node) ensureRegistered(ctx context.Context) {
	if n.store.IsLeader() || n.store.LeaderID() == "" {
		return
	}
	nonvoter := n.store.Suffrage(n.cfg.NodeID) == "Nonvoter"
	if m, ok, err := n.store.NodeMeta(n.cfg.NodeID); !nonvoter && (err != nil || ok && m.APIURL == n.APIURL()) {
		return
	}
	leader, err := n.LeaderURL(ctx)
	if err != nil {
		return
	}
	if err := n.tryJoin(ctx, []string{leader}); err != nil {
		n.log.Debug("registering with the leader", "err", err)
	}
}

func (n *Node) onLeader(ctx context.Context) {
	for attempt := 0; attempt < 10 && ctx.Err() == nil && n.store.IsLeader(); attempt++ {
		m, ok, err := n.store.NodeMeta(n.cfg.NodeID)
		if err == nil && ok && m.APIURL == n.APIURL() {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = n.store.Register(rctx, raftstore.NodeMeta{ID: n.cfg.NodeID, APIURL: n.APIURL()})
		cancel()
		if err == nil {
			return
		}
		n.log.Warn("registering the leader's API address", "err", err)
		time.Sleep(100 * time.Millisecond)
	}
}
