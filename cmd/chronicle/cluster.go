package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/internal/dirlock"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/raftstore"
)

const clusterUsage = `Usage:
  chronicle cluster status [--url URL] [--json]
                             members, roles, leader, Raft progress (GET /cluster)
  chronicle cluster join   [--url URL] --node-id ID --raft-addr HOST:PORT --api-url URL
                             admit a node: checked, caught up as a non-voter, then promoted
                             (POST /cluster/join; any member forwards to the leader)
  chronicle cluster remove [--url URL] ID
                             remove a node from the Raft configuration (DELETE /cluster/nodes/ID)
  chronicle cluster recover --data-dir DIR --peers ID=RAFTADDR[,ID=RAFTADDR...]
                             last resort when the quorum is lost for good: on its next start
                             the stopped node at DIR takes this configuration (README: Cluster)

--url (all but recover) is any member's API (default http://127.0.0.1:4000, or
CHRONICLE_URL). For a cluster with TLS: --url https://..., --cacert ca.crt, and for join
and remove a node certificate of the cluster CA: --cert n1.crt --key n1.key (or an admin
token).
Run 'chronicle cluster <subcommand> -h' for its flags.
`

const defaultClusterURL = "http://127.0.0.1:4000"

func clusterCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, clusterUsage)
		return errUsage
	}
	switch args[0] {
	case "status":
		return clusterStatus(ctx, args[1:], stdout, stderr)
	case "join":
		return clusterJoin(ctx, args[1:], stdout, stderr)
	case "remove", "rm":
		return clusterRemove(ctx, args[1:], stdout, stderr)
	case "recover":
		return clusterRecover(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, clusterUsage)
		return nil
	default:
		fmt.Fprintf(stderr, "chronicle cluster: unknown subcommand %q\n\n%s", args[0], clusterUsage)
		return errUsage
	}
}

// clusterOverview is the body of GET /cluster.
type clusterOverview struct {
	NodeID string            `json:"node_id"`
	Leader string            `json:"leader"`
	Term   uint64            `json:"term"`
	Nodes  []node.MemberView `json:"nodes"`
}

// newClusterStatusFlags builds `cluster status`'s flag set (the compose files run it).
func newClusterStatusFlags() (fs *flag.FlagSet, nodeURL *string, asJSON *bool, tlsOpts *clientTLS) {
	fs = flag.NewFlagSet("chronicle cluster status", flag.ContinueOnError)
	nodeURL = fs.String("url", defaultClusterURL, "API URL of any cluster member")
	addTokenFlags(fs)
	asJSON = fs.Bool("json", false, "print GET /cluster's JSON as is")
	tlsOpts = addClientTLSFlags(fs, false)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chronicle cluster status [flags]\n\nShows every member as the node at --url sees the cluster, with each member's own report;\nthe leader's line is marked with *.\n\n")
		fs.PrintDefaults()
	}
	return fs, nodeURL, asJSON, tlsOpts
}

func clusterStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, nodeURL, asJSON, tlsOpts := newClusterStatusFlags()
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	var raw json.RawMessage
	if err := clusterDo(ctx, fs, tlsOpts, *nodeURL, http.MethodGet, "/cluster", nil, &raw); err != nil {
		return fmt.Errorf("cluster status: %w", err)
	}
	if *asJSON {
		var buf bytes.Buffer
		if json.Indent(&buf, raw, "", "  ") != nil {
			buf.Reset()
			buf.Write(raw)
		}
		buf.WriteByte('\n')
		_, err := stdout.Write(buf.Bytes())
		return err
	}
	var ov clusterOverview
	if err := json.Unmarshal(raw, &ov); err != nil {
		return fmt.Errorf("cluster status: decode the answer of %s/cluster: %w", strings.TrimRight(*nodeURL, "/"), err)
	}
	return printClusterStatus(stdout, *nodeURL, ov)
}

func printClusterStatus(w io.Writer, via string, ov clusterOverview) error {
	leader := ov.Leader
	if leader == "" {
		leader = "none (no leader elected)"
	}
	fmt.Fprintf(w, "cluster as seen by %s (%s): %d members, leader %s, term %d\n\n",
		ov.NodeID, strings.TrimRight(via, "/"), len(ov.Nodes), leader, ov.Term)
	if len(ov.Nodes) == 0 {
		fmt.Fprintln(w, "no members: this node has not formed or joined a cluster yet")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\tNODE\tROLE\tSUFFRAGE\tRAFT ADDR\tAPI URL\tTERM\tCOMMIT\tAPPLIED\tPOSITION\tLAST CONTACT\tREADY")
	var notes []string
	for _, m := range ov.Nodes {
		mark := ""
		if m.Leader {
			mark = "*"
		}
		apiURL := m.APIURL
		if apiURL == "" {
			apiURL = "-"
		}
		role, term, commit, applied, pos, contact, ready := "unreachable", "-", "-", "-", "-", "-", "-"
		if m.Reachable && m.Info != nil {
			in := m.Info
			role = strings.ToLower(in.State)
			term, commit, applied, pos = u64(in.Term), u64(in.CommitIndex), u64(in.AppliedIndex), u64(in.Position)
			contact = lastContact(in.LastContact, role)
			ready = "no"
			if in.Ready {
				ready = "yes"
			}
			if in.Fatal != "" {
				notes = append(notes, fmt.Sprintf("%s: state machine stopped: %s", m.ID, in.Fatal))
			}
		} else if m.Error != "" {
			notes = append(notes, fmt.Sprintf("%s: unreachable: %s", m.ID, m.Error))
		}
		// A non-voter is a node still catching up after its join (or one whose
		// promotion was cut short by a leader change): it does not count for the quorum.
		suffrage := strings.ToLower(m.Suffrage)
		if suffrage == "" {
			suffrage = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			mark, m.ID, role, suffrage, m.RaftAddr, apiURL, term, commit, applied, pos, contact, ready)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
	}
	return nil
}

func u64(v uint64) string { return strconv.FormatUint(v, 10) }

// lastContact renders Raft's last_contact stat: "never", "0" (the leader) or a duration.
func lastContact(s, role string) string {
	switch {
	case s == "":
		return "-"
	case role == "leader" && s == "0":
		return "-"
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d > time.Second {
			return d.Round(10 * time.Millisecond).String()
		}
		return d.Round(100 * time.Microsecond).String()
	}
	return s
}

func clusterJoin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chronicle cluster join", flag.ContinueOnError)
	nodeURL := fs.String("url", defaultClusterURL, "API URL of any cluster member (it forwards to the leader)")
	addTokenFlags(fs)
	id := fs.String("node-id", "", "id of the node to admit (required)")
	raftAddr := fs.String("raft-addr", "", "host:port of the new node's Raft transport (required)")
	apiURL := fs.String("api-url", "", "the new node's API URL (required): the leader follows its catch-up there, and other nodes forward to it")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for the answer: the leader answers once the node has caught up")
	tlsOpts := addClientTLSFlags(fs, true)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chronicle cluster join --node-id ID --raft-addr HOST:PORT --api-url URL [--url URL]\n\n"+
			"Admits a running node: the leader checks that it answers on its Raft address, adds it\n"+
			"as a non-voter, waits until it has caught up with the log (asking its API), and only\n"+
			"then makes it a voter; if it does not catch up in time it is removed again. Start the\n"+
			"node with --join (any member URL) and it asks by itself; this is for admitting it by\n"+
			"hand. Only --url is read from the environment (CHRONICLE_URL).\n\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	// Only --url comes from the environment: CHRONICLE_NODE_ID, CHRONICLE_RAFT_ADDR and
	// CHRONICLE_API_URL may be set for this host's own `serve`, and must not name the
	// node to admit; CHRONICLE_TIMEOUT is `health`'s.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["api-url"] {
		*apiURL = ""
	}
	if !set["timeout"] {
		*timeout = 2 * time.Minute
	}
	var missing []string
	if !set["node-id"] || *id == "" {
		missing = append(missing, "--node-id")
	}
	if !set["raft-addr"] || *raftAddr == "" {
		missing = append(missing, "--raft-addr")
	}
	if !set["api-url"] || *apiURL == "" {
		missing = append(missing, "--api-url")
	}
	if len(missing) > 0 {
		fmt.Fprintf(stderr, "chronicle cluster join: %s required\n", strings.Join(missing, ", "))
		return errUsage
	}
	body, err := json.Marshal(map[string]string{"node_id": *id, "raft_addr": *raftAddr, "api_url": strings.TrimRight(*apiURL, "/")})
	if err != nil {
		return err
	}
	var res struct {
		NodeID string `json:"node_id"`
		Leader string `json:"leader"`
	}
	if err := clusterDoWithin(ctx, fs, tlsOpts, *timeout, *nodeURL, http.MethodPost, "/cluster/join", body, &res); err != nil {
		return fmt.Errorf("cluster join %s: %w", *id, err)
	}
	fmt.Fprintf(stdout, "node %s joined the cluster as a voter (raft %s, api %s); leader %s\n", *id, *raftAddr, strings.TrimRight(*apiURL, "/"), res.Leader)
	return nil
}

func clusterRemove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chronicle cluster remove", flag.ContinueOnError)
	nodeURL := fs.String("url", defaultClusterURL, "API URL of any cluster member (it forwards to the leader)")
	addTokenFlags(fs)
	idFlag := fs.String("node-id", "", "id of the node to remove (or give it as the argument)")
	tlsOpts := addClientTLSFlags(fs, true)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chronicle cluster remove [--url URL] ID\n\nRemoves a node from the Raft configuration. Stop the node afterwards; restarting it on\nits data would not make it a member again.\n\n")
		fs.PrintDefaults()
	}
	flagArgs, pos := splitPositional(fs, args)
	if err := parseFlags(fs, flagArgs, stderr); err != nil {
		return err
	}
	// The CHRONICLE_NODE_ID environment variable must not pick the node to remove.
	idSet := false
	fs.Visit(func(f *flag.Flag) { idSet = idSet || f.Name == "node-id" })
	var id string
	switch {
	case len(pos) > 1:
		fmt.Fprintf(stderr, "chronicle cluster remove: one node id, got %d: %s\n", len(pos), strings.Join(pos, " "))
		return errUsage
	case len(pos) == 1 && idSet && *idFlag != pos[0]:
		fmt.Fprintf(stderr, "chronicle cluster remove: two different node ids: --node-id %s and %s\n", *idFlag, pos[0])
		return errUsage
	case len(pos) == 1:
		id = pos[0]
	case idSet:
		id = *idFlag
	}
	if id == "" {
		fmt.Fprintln(stderr, "chronicle cluster remove: which node? give its id: chronicle cluster remove [--url URL] ID")
		return errUsage
	}
	var res struct {
		Removed string `json:"removed"`
	}
	if err := clusterDo(ctx, fs, tlsOpts, *nodeURL, http.MethodDelete, "/cluster/nodes/"+url.PathEscape(id), nil, &res); err != nil {
		return fmt.Errorf("cluster remove %s: %w", id, err)
	}
	fmt.Fprintf(stdout, "node %s removed from the cluster\n", id)
	return nil
}

// clusterRecover writes the recovery file (Raft's peers.json) into a stopped node's data
// directory. Both flags must be on the command line: the environment of a host running
// `serve` must not pick the data directory or the members of a recovery.
func clusterRecover(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chronicle cluster recover", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "data directory of the stopped node to recover (required)")
	var peerList listFlag
	fs.Var(&peerList, "peers", "the new configuration: ID=RAFTADDR, comma-separated or repeated, this node included (required)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chronicle cluster recover --data-dir DIR --peers ID=RAFTADDR[,ID=RAFTADDR...]\n\n"+
			"A last resort for a cluster that lost its quorum for good (most voters gone and not\n"+
			"coming back): with the node stopped, writes Raft's peers.json into its data directory;\n"+
			"on its next `chronicle serve` the node replaces its Raft configuration with these\n"+
			"members (all voters) and renames the file aside. Writes that only the lost nodes\n"+
			"had are lost; entries only this node had are kept. Do it on every survivor named,\n"+
			"with the same --peers. See README.md, Cluster.\n\n")
		fs.PrintDefaults()
	}
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "chronicle cluster recover: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return errUsage
	}
	if *dataDir == "" || len(peerList) == 0 {
		fmt.Fprintln(stderr, "chronicle cluster recover: --data-dir and --peers are required")
		return errUsage
	}
	var peers []raftstore.Peer
	for _, p := range peerList {
		id, addr, ok := strings.Cut(p, "=")
		if !ok || id == "" || addr == "" {
			fmt.Fprintf(stderr, "chronicle cluster recover: --peers %q: want ID=RAFTADDR\n", p)
			return errUsage
		}
		peers = append(peers, raftstore.Peer{ID: id, Address: addr})
	}
	// The node must be stopped: refuse while a process holds the directory (a missing
	// one is left for WritePeers to refuse, not created here).
	if fi, err := os.Stat(*dataDir); err == nil && fi.IsDir() {
		dl, err := dirlock.Acquire(*dataDir)
		if err != nil {
			return fmt.Errorf("cluster recover: %w", err)
		}
		defer dl.Release()
	}
	if err := raftstore.WritePeers(*dataDir, peers); err != nil {
		return fmt.Errorf("cluster recover: %w", err)
	}
	var names []string
	for _, p := range peers {
		names = append(names, p.ID+" at "+p.Address)
	}
	fmt.Fprintf(stdout, "wrote %s: on its next start the node at %s recovers as a cluster of %s.\n"+
		"Start it now (chronicle serve with its usual flags); its log says RECOVERED when done.\n",
		filepath.Join(*dataDir, raftstore.PeersFile), *dataDir, strings.Join(names, ", "))
	return nil
}

// splitPositional separates positional arguments from flags wherever they appear, so
// that both "remove ID --url U" and "remove --url U ID" work (the flag package stops at
// the first non-flag). Everything after "--" is positional.
func splitPositional(fs *flag.FlagSet, args []string) (flags, pos []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return flags, append(pos, args[i+1:]...)
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // unknown: let the flag package say so
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	return flags, pos
}

// clusterDo sends one request to the node at base, with the token fs's token flags name
// over TLS as tlsOpts say, and turns failures into messages that say which node
// answered what.
func clusterDo(ctx context.Context, fs *flag.FlagSet, tlsOpts *clientTLS, base, method, path string, body []byte, out any) error {
	return clusterDoWithin(ctx, fs, tlsOpts, 30*time.Second, base, method, path, body, out)
}

// clusterDoWithin is clusterDo with its own bound on the request.
func clusterDoWithin(ctx context.Context, fs *flag.FlagSet, tlsOpts *clientTLS, timeout time.Duration, base, method, path string, body []byte, out any) error {
	base = strings.TrimRight(base, "/")
	if u, err := url.Parse(base); err != nil || u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("--url %q: want a node's API URL such as %s", base, defaultClusterURL)
	}
	secret, err := flagSecret(fs)
	if err != nil {
		return err
	}
	hc, err := tlsOpts.client(timeout)
	if err != nil {
		return err
	}
	c := client.New(base, hc).WithToken(secret)
	_, err = c.Do(ctx, method, path, body, nil, out)
	var apiErr *client.APIError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &apiErr):
		return fmt.Errorf("%s (%d %s, from %s)", apiErr.Message, apiErr.Status, apiErr.Code, base)
	default:
		return fmt.Errorf("cannot reach %s: %w", base, err)
	}
}
