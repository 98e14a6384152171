package main

import (
	"context"
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
)

const tokenUsage = `Usage:
  chronicle token create [--url URL] --name NAME --role admin|writer|reader
                             make an API token and print its secret (shown this once)
  chronicle token list   [--url URL]
                             list tokens: name, role, who made them, revoked or not
  chronicle token revoke [--url URL] NAME
                             revoke a token; its name stays taken
  chronicle token generate --out FILE
                             write a new random secret to FILE (mode 0600) unless it exists,
                             for serve --bootstrap-token-file; talks to no node

Every subcommand needs an admin token: --token-file FILE, or CHRONICLE_TOKEN in the
environment (--token works too, but shows the secret to anyone who can list processes).
--url is any node's API (default http://127.0.0.1:4000, or CHRONICLE_URL).
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
	fs := flag.NewFlagSet("chronicle token "+args[0], flag.ContinueOnError)
	nodeURL := fs.String("url", defaultClusterURL, "API URL of any node (it forwards changes to the leader)")
	tf := addTokenFlags(fs)
	tf.tls = addClientTLSFlags(fs, false)
	switch args[0] {
	case "create":
		name := fs.String("name", "", "the token's name: it becomes created_by of every event the token writes (required)")
		role := fs.String("role", "", "admin, writer or reader (required)")
		if err := parseFlags(fs, args[1:], stderr); err != nil {
			return err
		}
		if *name == "" || *role == "" {
			fmt.Fprintln(stderr, "chronicle token create: --name and --role are required")
			return errUsage
		}
		c, err := tf.client(*nodeURL)
		if err != nil {
			return err
		}
		t, err := c.CreateToken(ctx, *name, *role)
		if err != nil {
			return tokenError("create", *nodeURL, err)
		}
		fmt.Fprintf(stderr, "token %s (%s) created; its secret is below and is not shown again\n", t.Name, t.Role)
		fmt.Fprintln(stdout, t.Secret)
		return nil
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
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		fmt.Fprintf(stdout, "%s exists; kept\n", path)
		return nil
	}
	if err != nil {
		return fmt.Errorf("token generate: %w", err)
	}
	_, werr := f.WriteString(chronicle.NewTokenSecret() + "\n")
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("token generate: %s: %w", path, err)
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
