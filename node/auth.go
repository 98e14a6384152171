package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/fsutil"
)

// BootstrapTokenName names the first admin token, made from Config.BootstrapTokenFile.
const BootstrapTokenName = "bootstrap-admin"

// exposed lists the listeners of cfg that other machines can reach.
func exposed(cfg Config) []string {
	var out []string
	add := func(flag, addr string) {
		if addr != "" && !loopbackAddr(addr) {
			out = append(out, flag+" "+addr)
		}
	}
	add("--http-addr", cfg.HTTPAddr)
	if cfg.Store != StoreSQL {
		add("--raft-addr", cfg.RaftAddr)
	}
	add("--nats-listen", cfg.NATSListen)
	return out
}

// checkProtected is protected mode: a node with a listener other machines can reach must
// have authentication configured (a bootstrap token file, or a token table that already
// holds tokens) unless Insecure says to run open anyway. tokensExist is asked only when
// it matters, and may be nil (the store is not open yet).
func checkProtected(cfg Config, tokensExist func() (bool, error)) error {
	open := exposed(cfg)
	if len(open) == 0 || cfg.Insecure {
		return nil
	}
	if cfg.BootstrapTokenFile != "" {
		return nil
	}
	if tokensExist != nil {
		ok, err := tokensExist()
		if err != nil {
			return fmt.Errorf("node: protected mode: read API tokens: %w", err)
		}
		if ok {
			return nil
		}
	}
	return fmt.Errorf("node: refusing to start: %s can be reached from other machines and no API token is configured, "+
		"so anyone who reaches it could move money. Give --bootstrap-token-file FILE (a new admin token is written "+
		"there if FILE does not exist), keep every listener on loopback, or pass --insecure to run without authentication",
		strings.Join(open, ", "))
}

// checkRaftProtected is protected mode for Raft, checked before the transport listens.
// Tokens guard the API, not Raft: a Raft port others can reach takes log entries from
// whoever connects, unless peers must prove themselves with the cluster CA.
func checkRaftProtected(cfg Config) error {
	if cfg.Insecure || cfg.Store == StoreSQL || loopbackAddr(cfg.RaftAddr) || cfg.TLSCAFile != "" {
		return nil
	}
	return fmt.Errorf("node: refusing to start: --raft-addr %s can be reached from other machines without TLS, "+
		"so anyone who reaches it could write to the log. Give --tls-ca, --tls-cert and --tls-key (make them with "+
		"chronicle certs), keep --raft-addr on loopback, or pass --insecure", cfg.RaftAddr)
}

// bootstrapSecret reads the bootstrap token from path, or, when there is no such file,
// writes a new one there (mode 0600) and says so. The secret itself is never logged. The
// file is written as token generate writes it (fsutil.WriteNew): it appears whole or not
// at all, so a crash midway never leaves a torn file that the next start would refuse,
// and a file that appeared meanwhile is kept.
func bootstrapSecret(path string, log interface{ Info(string, ...any) }) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		secret := chronicle.NewTokenSecret()
		exists, err := fsutil.WriteNew(path, []byte(secret+"\n"))
		if err != nil {
			return "", fmt.Errorf("node: write bootstrap token: %w", err)
		}
		if exists {
			return bootstrapSecret(path, log) // another node on this machine wrote it first
		}
		log.Info("wrote a new admin token; it becomes the first admin token of a cluster this node founds", "file", path)
		return secret, nil
	}
	if err != nil {
		return "", fmt.Errorf("node: read bootstrap token: %w", err)
	}
	secret := strings.TrimSpace(string(b))
	if len(secret) < chronicle.MinTokenSecretLen || strings.ContainsAny(secret, " \t\r\n") {
		return "", fmt.Errorf("node: bootstrap token file %s: want one secret of at least %d characters without spaces (delete the file to have one made)",
			path, chronicle.MinTokenSecretLen)
	}
	return secret, nil
}

// bootstrapOp is the operation that makes the bootstrap token: a no-op on a token table
// that ever held a token, so that a revoked bootstrap token never comes back.
func bootstrapOp(secret string) chronicle.TokenOp {
	return chronicle.TokenOp{Kind: chronicle.TokenCreate, Name: BootstrapTokenName, Role: chronicle.RoleAdmin,
		Hash: chronicle.HashToken(secret), At: time.Now().UTC(), By: "bootstrap", IfNone: true}
}

// bootstrapToken makes the bootstrap token once a store that can take it is there: the
// leader in Raft mode (a follower's cluster gets it from whichever node founded it), the
// store itself in SQL mode. It retries until it is done or the table holds a token.
func (n *Node) bootstrapToken(ctx context.Context, store chronicle.TokenStore, canApply func() bool) {
	if n.bootSecret == "" {
		return
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		if canApply() {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			list, err := store.Tokens(cctx)
			if err == nil && len(list) == 0 {
				_, err = store.ApplyToken(cctx, bootstrapOp(n.bootSecret))
				if err == nil {
					n.log.Info("bootstrap admin token created", "name", BootstrapTokenName)
				}
			}
			cancel()
			if err == nil {
				return
			}
			if ctx.Err() == nil {
				n.log.Warn("creating the bootstrap token; retrying", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
