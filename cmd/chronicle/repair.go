package main

// chronicle repair: a cluster member whose data is damaged (it refuses to start, or
// verify named it) is rebuilt from the cluster. Its Raft stable store (current term and
// vote) goes with the damaged data, and a member that forgot its vote could vote twice
// in one term: so it never comes back as the same member. The repair removes it from
// the configuration through the leader, moves its data aside (never deleting it), and
// marks the directory so that the node's next start can only rejoin: as a non-voter
// first, caught up by the leader (by snapshot when the leader's log no longer reaches
// back far enough), then promoted once it has caught up (raftstore/join.go).

import (
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
	"strings"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/chronicle-ledger/chronicle/internal/dirlock"
	"github.com/chronicle-ledger/chronicle/internal/fsutil"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/raftstore"
)

// repairData names the entries of a data directory that are the node's data and move
// aside; every other top-level file (TLS certificates and keys, token files an operator
// keeps there) stays in place, with a copy in the aside folder.
func repairData(name string, isDir bool) bool {
	switch {
	case strings.HasPrefix(name, "damaged-"):
		return false // an earlier repair's aside folder, when it had to be inside
	case isDir:
		return true
	case name == "FORMAT", name == node.RepairFile, strings.HasPrefix(name, raftstore.PeersFile):
		return true
	}
	return false
}

// repairMarker is the content of the node.RepairFile the repair leaves.
type repairMarker struct {
	NodeID     string    `json:"node_id"`
	RepairedAt time.Time `json:"repaired_at"`
	MovedTo    string    `json:"moved_to,omitempty"`
}

func repairCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chronicle repair", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "data directory of the stopped, damaged node (required)")
	nodeID := fs.String("node-id", "", "the node's id in the cluster (required)")
	var join listFlag
	fs.Var(&join, "join", "API URLs of the cluster's other members, comma-separated or repeated (required): the removal goes through them to the leader")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for each answer from the cluster")
	addTokenFlags(fs)
	tlsOpts := addClientTLSFlags(fs, true)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chronicle repair --data-dir DIR --node-id ID --join URL[,URL...] [flags]\n\n"+
			"Rebuilds a damaged cluster member from the cluster. With the node stopped, it\n"+
			"  1. removes ID from the Raft configuration (through the leader; the cluster must have one),\n"+
			"  2. moves everything of the node's data in DIR aside to DIR.damaged-<time> (never deletes),\n"+
			"     leaving other files there (TLS certificates and keys, token files) in place,\n"+
			"  3. writes DIR/%s, so that the node's next start can only rejoin.\n"+
			"Then start the node with its usual flags, --join included: it is admitted as a new\n"+
			"non-voter, catches up from the leader, and is promoted to voter once caught up.\n"+
			"Running it again is safe: steps already done are skipped. Flags are read from the\n"+
			"command line only (CHRONICLE_TOKEN and CHRONICLE_TOKEN_FILE excepted). README: Repairing a damaged node.\n\n", node.RepairFile)
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
		fmt.Fprintf(stderr, "chronicle repair: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return errUsage
	}
	if *dataDir == "" || *nodeID == "" || len(join) == 0 {
		fmt.Fprintln(stderr, "chronicle repair: --data-dir, --node-id and --join are required")
		return errUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, name := range []string{"token", "token-file"} {
		if v, ok := os.LookupEnv(envName(name)); ok && !set[name] {
			_ = fs.Set(name, v)
		}
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return fmt.Errorf("repair: --data-dir: %w", err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("repair: --data-dir %s is not a directory (%v)", dir, err)
	}
	// The data directory's lock, then the stores' locks: a running node holds them. Kept
	// until the repair is done so that the node cannot start meanwhile.
	dl, err := dirlock.Acquire(dir)
	if err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	defer dl.Release()
	for _, sub := range []string{"raft", "state", "events"} {
		if _, err := os.Stat(filepath.Join(dir, sub)); err != nil {
			continue
		}
		lock, err := vfs.Default.Lock(filepath.Join(dir, sub, "LOCK"))
		if err != nil {
			return fmt.Errorf("repair: data directory %s is in use (%v): stop the node first", dir, err)
		}
		defer lock.Close()
	}

	// 1. Out of the configuration, through the leader.
	do := func(method, base, path string, out any) error {
		return clusterDoWithin(ctx, fs, tlsOpts, *timeout, base, method, path, nil, out)
	}
	var ov clusterOverview
	var via string
	var errs []string
	for _, u := range join {
		if err := do(http.MethodGet, u, "/cluster", &ov); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		via = strings.TrimRight(u, "/")
		break
	}
	if via == "" {
		return fmt.Errorf("repair: no member of the cluster answered (%s); nothing was changed", strings.Join(errs, "; "))
	}
	if ov.NodeID == *nodeID {
		return fmt.Errorf("repair: %s is node %s itself, which is running: stop it, and give the other members' URLs to --join; nothing was changed", via, *nodeID)
	}
	if ov.Leader == "" {
		return fmt.Errorf("repair: the cluster has no leader (as %s sees it): a member cannot be removed without one; nothing was changed", via)
	}
	if ov.Leader == *nodeID {
		return fmt.Errorf("repair: node %s is the cluster's leader, so it is running: stop it first (another member takes over); nothing was changed", *nodeID)
	}
	member := false
	for _, m := range ov.Nodes {
		if m.ID != *nodeID {
			continue
		}
		member = true
		if m.Reachable && m.Info != nil && m.Info.NodeID == *nodeID {
			return fmt.Errorf("repair: node %s answers at %s: stop it first; nothing was changed", *nodeID, m.APIURL)
		}
	}
	if member {
		var res struct {
			Removed string `json:"removed"`
		}
		if err := do(http.MethodDelete, via, "/cluster/nodes/"+url.PathEscape(*nodeID), &res); err != nil {
			return fmt.Errorf("repair: remove node %s from the cluster: %w; its data was not touched: run the repair again", *nodeID, err)
		}
		fmt.Fprintf(stdout, "removed node %s from the cluster's configuration (via %s, leader %s)\n", *nodeID, via, ov.Leader)
	} else {
		fmt.Fprintf(stdout, "node %s is not in the cluster's configuration (as %s sees it): nothing to remove\n", *nodeID, via)
	}

	// 2. The data aside.
	movedTo, moved, kept, err := moveAside(dir, time.Now())
	if err != nil {
		return fmt.Errorf("repair: %w; the node is out of the cluster: fix this and run the repair again", err)
	}
	if len(moved) > 0 {
		fmt.Fprintf(stdout, "moved the damaged data aside to %s: %s\n", movedTo, strings.Join(moved, ", "))
	} else {
		fmt.Fprintf(stdout, "%s holds no node data: nothing to move\n", dir)
	}
	if len(kept) > 0 {
		fmt.Fprintf(stdout, "kept in place (copied aside too): %s\n", strings.Join(kept, ", "))
	}

	// 3. The marker: the next start can only rejoin.
	b, err := json.MarshalIndent(repairMarker{NodeID: *nodeID, RepairedAt: time.Now().UTC(), MovedTo: movedTo}, "", "  ")
	if err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, node.RepairFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("repair: write the repair marker: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s\n\nNow start node %s with its usual flags, --join %s included: it joins as a new\n"+
		"non-voter, catches up from the leader, and is promoted to voter once caught up.\n"+
		"Check with: chronicle cluster status --url %s, then chronicle verify --cluster --url %s\n",
		filepath.Join(dir, node.RepairFile), *nodeID, strings.Join(join, ","), via, via)
	return nil
}

// moveAside moves the node's data in dir to a sibling folder <dir>.damaged-<time>
// (or, when dir is a mount point and a rename cannot leave it, to dir/damaged-<time>),
// and copies the other top-level files there too. It returns the folder ("" when there
// was nothing to move), the names moved and the names kept.
func moveAside(dir string, now time.Time) (string, []string, []string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", nil, nil, fmt.Errorf("read %s: %w", dir, err)
	}
	var moves, keeps []string
	for _, e := range entries {
		if repairData(e.Name(), e.IsDir()) {
			moves = append(moves, e.Name())
		} else if e.Type().IsRegular() {
			keeps = append(keeps, e.Name())
		}
	}
	if len(moves) == 0 {
		return "", nil, nil, nil
	}
	stamp := now.UTC().Format("20060102T150405Z")
	aside := dir + ".damaged-" + stamp
	if err := os.Mkdir(aside, 0o755); err != nil {
		return "", nil, nil, fmt.Errorf("create %s: %w", aside, err)
	}
	for i, name := range moves {
		err := os.Rename(filepath.Join(dir, name), filepath.Join(aside, name))
		if i == 0 && errors.Is(err, syscall.EXDEV) {
			// dir is a mount point of its own: the folder goes inside it.
			_ = os.Remove(aside)
			aside = filepath.Join(dir, "damaged-"+stamp)
			if err := os.Mkdir(aside, 0o755); err != nil {
				return "", nil, nil, fmt.Errorf("create %s: %w", aside, err)
			}
			err = os.Rename(filepath.Join(dir, name), filepath.Join(aside, name))
		}
		if err != nil {
			return aside, moves[:i], nil, fmt.Errorf("move %s to %s: %w (moved so far: %s)", name, aside, err, strings.Join(moves[:i], ", "))
		}
	}
	for _, name := range keeps {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err == nil {
			err = fsutil.WriteFileAtomic(filepath.Join(aside, name), b, 0o600)
		}
		if err != nil {
			return aside, moves, nil, fmt.Errorf("copy %s to %s: %w", name, aside, err)
		}
	}
	for _, d := range []string{aside, dir, filepath.Dir(aside)} {
		if err := fsutil.SyncDir(d); err != nil {
			return aside, moves, keeps, err
		}
	}
	return aside, moves, keeps, nil
}
