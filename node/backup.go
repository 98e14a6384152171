package node

import (
	"context"

	"github.com/chronicle-ledger/chronicle/httpapi"
)

// openBackup opens an online backup of this Raft node's state for GET /admin/backup.
func (n *Node) openBackup(context.Context) (httpapi.BackupSource, error) {
	b, err := n.store.OpenBackup()
	if err != nil {
		return nil, err
	}
	return b, nil
}
