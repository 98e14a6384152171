package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// RepairFile is written by `chronicle repair` into a data directory whose contents it
// moved aside (README: Repairing a damaged node). While it is there the node has no
// Raft state of its own and must come back as a new member through the safe join:
// it refuses to start without --join (it would otherwise found a cluster of its own),
// never founds a cluster with --bootstrap-expect, and the file is removed once the
// node holds Raft state again.
const RepairFile = "REPAIR"

// checkRepair applies a repair marker in cfg.DataDir to cfg; it reports whether one is there.
func checkRepair(cfg *Config) (bool, error) {
	path := filepath.Join(cfg.DataDir, RepairFile)
	_, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("node: read the repair marker: %w", err)
	}
	if len(cfg.Join) == 0 {
		return true, fmt.Errorf("node: %s says `chronicle repair` moved this node's data aside: start it with --join "+
			"(the API URLs of the cluster's members) so that it rejoins as a new member and catches up from the leader; "+
			"without --join it would found a new cluster of its own", path)
	}
	// Join only: the cluster exists, and this node must be admitted to it.
	cfg.BootstrapExpect = 0
	return true, nil
}

// clearRepair removes the repair marker once the node holds Raft state again.
func (n *Node) clearRepair() {
	if !n.repairing {
		return
	}
	path := filepath.Join(n.cfg.DataDir, RepairFile)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		n.log.Warn("could not remove the repair marker", "path", path, "err", err)
		return
	}
	n.repairing = false
	n.log.Info("repaired node rejoined the cluster; repair marker removed", "path", path)
}
