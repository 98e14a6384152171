// Command chronicle is the Chronicle Ledger binary: serve a node, load-test one, and more.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `chronicle — an event-sourced, double-entry ledger

Usage:
  chronicle serve [flags]    run a node (embedded Raft + Pebble; data in ./data)
  chronicle bench [flags]    load-test a running node with transfers
  chronicle bench batch|balance-at|disk|http|suite [flags]
                             other benches, the ceilings, and all of them (make bench)
  chronicle verify [flags]   prove the ledger consistent: hash chain, postings, views,
                             and in a cluster every member's own log and state
  chronicle projector [flags] [rebuild]
                             keep a PostgreSQL read model current from a node's log
  chronicle cluster status|join|remove|recover [flags]
                             show a cluster's members and roles; admit or remove a node
  chronicle repair --data-dir DIR --node-id ID --join URL
                             rebuild a damaged cluster member from the cluster (stopped node)
  chronicle backup --url URL --out FILE
                             take an online backup of a running Raft node (admin)
  chronicle restore FILE --data-dir DIR
                             make a new data directory from a backup
  chronicle token create|list|revoke [flags]
                             manage API tokens (admin)
  chronicle certs ca|node|cluster [flags]
                             make a cluster CA and node certificates for --tls-ca/--tls-cert/--tls-key
  chronicle health [flags]   exit 0 when a node is ready (GET /ready), else 1: for health checks
  chronicle version          print the version and build information

Run 'chronicle <command> -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stdout, stderr)
	case "bench":
		err = bench(ctx, args[1:], stdout, stderr)
	case "verify":
		err = verify(ctx, args[1:], stdout, stderr)
	case "projector":
		err = projectorCmd(ctx, args[1:], stdout, stderr)
	case "cluster":
		err = clusterCmd(ctx, args[1:], stdout, stderr)
	case "repair":
		err = repairCmd(ctx, args[1:], stdout, stderr)
	case "backup":
		err = backupCmd(ctx, args[1:], stdout, stderr)
	case "restore":
		err = restoreCmd(ctx, args[1:], stdout, stderr)
	case "token":
		err = tokenCmd(ctx, args[1:], stdout, stderr)
	case "health":
		err = health(ctx, args[1:], stdout, stderr)
	case "certs":
		err = certsCmd(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-v":
		printVersion(stdout)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "chronicle: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err == errHelp {
		return 0
	}
	if err == errUsage {
		return 2
	}
	if err == errVerifyFailed {
		return 1
	}
	if err != nil {
		fmt.Fprintln(stderr, "chronicle:", err)
		return 1
	}
	return 0
}
