package main

import (
	"context"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/internal/fsutil"
)

const tokenUsage = `Usage:
  chronicle token create [--url URL] --name NAME --role admin|writer|reader [--out FILE]
                             make an API token and print its secret (shown this once); with
                             --out, write it to FILE (mode 0600) instead, unless FILE exists:
                             then keep it and make nothing (for a one-shot container);
                             --cacert-out FILE copies --cacert's certificates there too
  chronicle token list   [--url URL]
                             list tokens: name, role, who made them, revoked or not
  chronicle token revoke [--url URL] NAME
                             revoke a token; its name stays taken
  chronicle token generate --out FILE
                             write a new random secret to FILE (mode 0600) unless it exists,
                             for serve --bootstrap-token-file; talks to no node

create, list and revoke ask a node, which wants an admin token once it has any tokens:
--token-file FILE, or CHRONICLE_TOKEN in the environment (--token works too, but shows
the secret to anyone who can list processes). --url is any node's API (default
http://127.0.0.1:4000, or CHRONICLE_URL). generate needs neither.
`

// tokenFlags are the flags of every command that talks to a node: which token to send.
type tokenFlags struct {
	token, file string
	// tls, when set, is how to reach an https:// node (--cacert).
	tls *clientTLS
}

func addTokenFlags(fs *flag.FlagSet) *tokenFlags {
	t := &tokenFlags{}
	fs.StringVar(&t.token, "token", "", "API token to send (better: CHRONICLE_TOKEN in the environment, or --token-file)")
	fs.StringVar(&t.file, "token-file", "", "file holding the API token to send")
	return t
}

// secret is the token to send ("" for none).
func (t *tokenFlags) secret() (string, error) {
	if t.token != "" {
		return strings.TrimSpace(t.token), nil
	}
	if t.file == "" {
		return "", nil
	}
	b, err := os.ReadFile(t.file)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// flagSecret is the token named by the token flags fs was given by addTokenFlags.
func flagSecret(fs *flag.FlagSet) (string, error) {
	t := tokenFlags{}
	if f := fs.Lookup("token"); f != nil {
		t.token = f.Value.String()
	}
	if f := fs.Lookup("token-file"); f != nil {
		t.file = f.Value.String()
	}
	return t.secret()
}

// client returns a client of base that sends the token.
func (t *tokenFlags) client(base string) (*client.Client, error) {
	secret, err := t.secret()
	if err != nil {
		return nil, err
	}
	var hc *http.Client
	if t.tls != nil {
		if hc, err = t.tls.client(30 * time.Second); err != nil {
			return nil, err
		}
	}
	return client.New(base, hc).WithToken(secret), nil
}

func tokenCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, tokenUsage)
		return errUsage
	}
	fs, nodeURL, tf := newTokenClientFlags(args[0])
	switch args[0] {
	case "create":
		cfs, o := newTokenCreateFlags()
		if err := parseFlags(cfs, args[1:], stderr); err != nil {
			return err
		}
		if o.name == "" || o.role == "" {
			fmt.Fprintln(stderr, "chronicle token create: --name and --role are required")
			return errUsage
		}
		if o.cacertOut != "" && o.tf.tls.cacert == "" {
			fmt.Fprintln(stderr, "chronicle token create: --cacert-out copies --cacert; give both")
			return errUsage
		}
		return createToken(ctx, o, stdout, stderr)
	case "list", "ls":
		if err := parseFlags(fs, args[1:], stderr); err != nil {
			return err
		}
		c, err := tf.client(*nodeURL)
		if err != nil {
			return err
		}
		list, err := c.Tokens(ctx)
		if err != nil {
			return tokenError("list", *nodeURL, err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLE\tCREATED\tBY\tSTATE")
		for _, t := range list {
			state := "active"
			if t.Revoked && t.RevokedAt != nil {
				state = "revoked " + t.RevokedAt.Format(time.RFC3339) + " by " + t.RevokedBy
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.Role, t.CreatedAt.Format(time.RFC3339), t.CreatedBy, state)
		}
		return tw.Flush()
	case "revoke":
		flagArgs, pos := splitPositional(fs, args[1:])
		if err := parseFlags(fs, flagArgs, stderr); err != nil {
			return err
		}
		if len(pos) != 1 {
			fmt.Fprintln(stderr, "chronicle token revoke: name the token to revoke")
			return errUsage
		}
		c, err := tf.client(*nodeURL)
		if err != nil {
			return err
		}
		if _, err := c.RevokeToken(ctx, pos[0]); err != nil {
			return tokenError("revoke", *nodeURL, err)
		}
		fmt.Fprintf(stdout, "token %s revoked\n", pos[0])
		return nil
	case "generate":
		gfs, out := newTokenGenerateFlags()
		if err := parseFlags(gfs, args[1:], stderr); err != nil {
			return err
		}
		if *out == "" {
			fmt.Fprintln(stderr, "chronicle token generate: --out FILE is required")
			return errUsage
		}
		return generateToken(*out, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, tokenUsage)
		return nil
	default:
		fmt.Fprintf(stderr, "chronicle token: unknown subcommand %q\n\n%s", args[0], tokenUsage)
		return errUsage
	}
}

// newTokenClientFlags builds the flag set of a token subcommand that talks to a node:
// which node, which token to send, and the CA to verify it with.
func newTokenClientFlags(sub string) (fset *flag.FlagSet, nodeURL *string, tf *tokenFlags) {
	fset = flag.NewFlagSet("chronicle token "+sub, flag.ContinueOnError)
	nodeURL = fset.String("url", defaultClusterURL, "API URL of any node (it forwards changes to the leader)")
	tf = addTokenFlags(fset)
	tf.tls = addClientTLSFlags(fset, false)
	return fset, nodeURL, tf
}

// tokenCreateOptions are token create's flags.
type tokenCreateOptions struct {
	url                        *string
	tf                         *tokenFlags
	name, role, out, cacertOut string
}

// newTokenCreateFlags builds token create's flag set; the deployment tests parse the
// compose files' one-shot services that make Prometheus' reader token with it.
func newTokenCreateFlags() (*flag.FlagSet, *tokenCreateOptions) {
	fset, nodeURL, tf := newTokenClientFlags("create")
	o := &tokenCreateOptions{url: nodeURL, tf: tf}
	fset.StringVar(&o.name, "name", "", "the token's name: it becomes created_by of every event the token writes (required)")
	fset.StringVar(&o.role, "role", "", "admin, writer or reader (required)")
	fset.StringVar(&o.out, "out", "", "write the secret to this file (mode 0600) instead of printing it; when the file exists, keep it and make no token")
	fset.StringVar(&o.cacertOut, "cacert-out", "", "also copy the certificates of --cacert (never a key) to this file (mode 0644), for a client given only this file and --out's")
	return fset, o
}

// createToken makes a token. With --out the secret goes to that file, never to the
// output, and an existing file means a token was made by an earlier run: it is kept
// and no node is asked, so a one-shot container can run this at every start.
func createToken(ctx context.Context, o *tokenCreateOptions, stdout, stderr io.Writer) error {
	if o.cacertOut != "" {
		if err := copyCACert(o.tf.tls.cacert, o.cacertOut); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "copied the CA certificate %s to %s\n", o.tf.tls.cacert, o.cacertOut)
	}
	var file *fsutil.NewFile
	if o.out != "" {
		f, kept, err := fsutil.PrepareNew(o.out)
		switch {
		case err != nil:
			return fmt.Errorf("token create: --out: %w", err)
		case kept:
			fmt.Fprintf(stdout, "%s exists; kept (no token made)\n", o.out)
			return nil
		}
		file = f
		defer file.Discard()
	}
	c, err := o.tf.client(*o.url)
	if err != nil {
		return err
	}
	t, err := c.CreateToken(ctx, o.name, o.role)
	if err != nil {
		if file != nil && client.CodeOf(err) == chronicle.CodeTokenExists {
			// Names are never reused and a secret is shown once: the earlier run's secret
			// is gone with its file, and only a new name can make a new one.
			return fmt.Errorf("token create: a token named %q exists but %s does not, and its secret cannot be shown again: "+
				"revoke it (chronicle token revoke %s) and make one under another --name, or put its secret in %s", o.name, o.out, o.name, o.out)
		}
		return tokenError("create", *o.url, err)
	}
	if file == nil {
		fmt.Fprintf(stderr, "token %s (%s) created; its secret is below and is not shown again\n", t.Name, t.Role)
		fmt.Fprintln(stdout, t.Secret)
		return nil
	}
	kept, err := file.Commit([]byte(t.Secret + "\n"))
	switch {
	case err != nil:
		return fmt.Errorf("token create: token %s was made but its secret was not written (revoke it and make another): %w", t.Name, err)
	case kept:
		return fmt.Errorf("token create: %s appeared while token %s was being made and is kept; the new token's secret is lost: revoke %s", o.out, t.Name, t.Name)
	}
	fmt.Fprintf(stdout, "token %s (%s) created; its secret is in %s\n", t.Name, t.Role, o.out)
	return nil
}

// copyCACert copies the certificates of the PEM file from to to, atomically and
// replacing an older copy (a certificate is public). Anything else in the file, a
// private key above all, is left out.
func copyCACert(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("token create: --cacert: %w", err)
	}
	var certs []byte
	for rest := data; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			certs = append(certs, pem.EncodeToMemory(&pem.Block{Type: blk.Type, Bytes: blk.Bytes})...)
		}
	}
	if len(certs) == 0 {
		return fmt.Errorf("token create: --cacert %s: no PEM certificate in it", from)
	}
	if err := fsutil.WriteFileAtomic(to, certs, 0o644); err != nil {
		return fmt.Errorf("token create: --cacert-out: %w", err)
	}
	return nil
}

// newTokenGenerateFlags builds token generate's flag set; the deployment tests parse the
// compose files' one-shot token services with it.
func newTokenGenerateFlags() (fs *flag.FlagSet, out *string) {
	fs = flag.NewFlagSet("chronicle token generate", flag.ContinueOnError)
	out = fs.String("out", "", "file to write the secret to (required); an existing file is kept as is")
	return fs, out
}

// generateToken writes a new secret to path unless the file exists (so a one-shot
// container can run it on every start), and never prints the secret.
func generateToken(path string, stdout io.Writer) error {
	kept, err := fsutil.WriteNew(path, []byte(chronicle.NewTokenSecret()+"\n"))
	if err != nil {
		return fmt.Errorf("token generate: %w", err)
	}
	if kept {
		fmt.Fprintf(stdout, "%s exists; kept\n", path)
		return nil
	}
	fmt.Fprintf(stdout, "wrote a new token secret to %s\n", path)
	return nil
}

func tokenError(what, base string, err error) error {
	var apiErr *client.APIError
	if errors.As(err, &apiErr) {
		return fmt.Errorf("token %s: %s (%d %s, from %s)", what, apiErr.Message, apiErr.Status, apiErr.Code, base)
	}
	return fmt.Errorf("token %s: cannot reach %s: %w", what, base, err)
}
