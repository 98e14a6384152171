package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestHelpExitsZero: asking any command for its usage (-h, --help, or help where the
// command has subcommands) prints it and exits 0; a bad flag still exits 2. Nothing is
// started: each of these returns before opening a data directory or a port.
func TestHelpExitsZero(t *testing.T) {
	commands := [][]string{
		{}, // chronicle --help
		{"serve"}, {"bench"}, {"bench", "transfers"}, {"bench", "batch"}, {"bench", "balance-at"},
		{"bench", "disk"}, {"bench", "http"}, {"bench", "fanout"}, {"bench", "suite"},
		{"verify"}, {"projector"}, {"projector", "rebuild"},
		{"cluster"}, {"cluster", "status"}, {"cluster", "join"}, {"cluster", "remove"}, {"cluster", "recover"},
		{"repair"}, {"token"}, {"token", "create"}, {"token", "list"}, {"token", "revoke"}, {"token", "generate"},
		{"health"}, {"certs"}, {"certs", "ca"}, {"certs", "node"}, {"certs", "cluster"},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, cmd := range commands {
		for _, h := range []string{"-h", "--help"} {
			args := append(append([]string{}, cmd...), h)
			var out, errOut bytes.Buffer
			code := run(ctx, args, &out, &errOut)
			if code != 0 {
				t.Errorf("chronicle %s: exit %d, want 0\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
				continue
			}
			if text := out.String() + errOut.String(); !strings.Contains(strings.ToLower(text), "usage") {
				t.Errorf("chronicle %s printed no usage:\n%s", strings.Join(args, " "), text)
			}
		}
	}
	for _, args := range [][]string{{"help"}, {"cluster", "help"}, {"token", "help"}, {"certs", "help"}, {"bench", "help"}} {
		var out, errOut bytes.Buffer
		if code := run(ctx, args, &out, &errOut); code != 0 || !strings.Contains(strings.ToLower(out.String()), "usage") {
			t.Errorf("chronicle %s: exit %d, output %q", strings.Join(args, " "), code, out.String()+errOut.String())
		}
	}
	// A real usage error is still one.
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"serve", "--no-such-flag"}, &out, &errOut); code != 2 {
		t.Errorf("chronicle serve --no-such-flag: exit %d, want 2", code)
	}
	if code := run(ctx, []string{"projector", "--read-model", "postgres://x", "rebuild", "extra"}, &out, &errOut); code != 2 {
		t.Errorf("chronicle projector rebuild extra: exit %d, want 2", code)
	}
}
