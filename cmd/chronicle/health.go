package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/chronicle-ledger/chronicle/api"
)

const defaultHealthURL = "http://127.0.0.1:4000"

// newHealthFlags builds `health`'s flag set (the image's HEALTHCHECK and the compose
// files' health checks run it).
func newHealthFlags() (fs *flag.FlagSet, nodeURL *string, timeout *time.Duration, tlsOpts *clientTLS) {
	fs = flag.NewFlagSet("chronicle health", flag.ContinueOnError)
	nodeURL = fs.String("url", defaultHealthURL, "API URL of the node to check (https:// for a node with TLS, with --cacert)")
	timeout = fs.Duration("timeout", 2*time.Second, "give up after this long")
	tlsOpts = addClientTLSFlags(fs, false)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chronicle health [flags]\n\nExits 0 when the node's GET /ready answers 200 (it has a leader and has caught up),\nelse 1 with the reason on stderr. For container health checks: no curl needed.\n\n")
		fs.PrintDefaults()
	}
	return fs, nodeURL, timeout, tlsOpts
}

// health asks a node's /ready once.
func health(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, nodeURL, timeout, tlsOpts := newHealthFlags()
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *timeout <= 0 {
		return fmt.Errorf("health: --timeout %s: want a positive duration", *timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	u := strings.TrimRight(*nodeURL, "/") + "/ready"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	hc, err := tlsOpts.client(0) // the context bounds the request
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("health: read the answer of %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s answered %s%s", u, resp.Status, readyReason(body))
	}
	fmt.Fprintf(stdout, "ready: %s\n", u)
	return nil
}

// readyReason is ": <why>" from a /ready error body, on one line, or "".
func readyReason(body []byte) string {
	var r api.Ready
	why := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &r) == nil {
		why = r.Error
	}
	why = strings.Join(strings.Fields(why), " ")
	if len(why) > 200 {
		why = why[:200] + "…"
	}
	if why == "" {
		return ""
	}
	return ": " + why
}

// printVersion writes the version, then the toolchain and, when the build was stamped
// with it, the VCS revision.
func printVersion(w io.Writer) {
	fmt.Fprintln(w, "chronicle", version())
	fmt.Fprintf(w, "go        %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	var rev, at, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = " (modified)"
			}
		}
	}
	if rev != "" {
		fmt.Fprintf(w, "revision  %s%s %s\n", rev, modified, at)
	}
}
