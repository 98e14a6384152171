package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/chronicle-ledger/chronicle/internal/pki"
)

const certsUsage = `Usage:
  chronicle certs ca   --out DIR [--force]
                             make a cluster CA: DIR/ca.crt and DIR/ca.key
  chronicle certs node --ca-dir DIR --name NAME --hosts H1,H2,... --out DIR [--force]
                             make DIR/NAME.crt and DIR/NAME.key, signed by the CA in --ca-dir,
                             for server and client use, valid for the hosts (IPs and names)
  chronicle certs cluster --out DIR --node NAME=H1,H2,... [--node ...]
                             make what is missing of a CA and node certificates in DIR, and
                             keep what exists (for make cluster and the compose files)

Keys are ECDSA P-256, written with mode 0600; the CA is valid for 10 years, node
certificates for 2. Existing files are never overwritten without --force.
Then: chronicle serve --tls-ca DIR/ca.crt --tls-cert DIR/NAME.crt --tls-key DIR/NAME.key
`

func certsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, certsUsage)
		return errUsage
	}
	switch args[0] {
	case "ca":
		return certsCA(args[1:], stdout, stderr)
	case "node":
		return certsNode(args[1:], stdout, stderr)
	case "cluster":
		return certsCluster(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, certsUsage)
		return nil
	default:
		fmt.Fprintf(stderr, "chronicle certs: unknown subcommand %q\n\n%s", args[0], certsUsage)
		return errUsage
	}
}

// newCertsFlags builds the flag set of `certs <sub>` (the compose files run `certs
// cluster`; their checks parse it).
func newCertsFlags(sub string) (*flag.FlagSet, *certsOptions) {
	o := &certsOptions{}
	fs := flag.NewFlagSet("chronicle certs "+sub, flag.ContinueOnError)
	fs.StringVar(&o.out, "out", "", "directory to write to (created if missing)")
	switch sub {
	case "ca":
		fs.StringVar(&o.name, "name", "Chronicle cluster CA", "the CA's common name")
		fs.BoolVar(&o.force, "force", false, "overwrite existing files")
	case "node":
		fs.StringVar(&o.caDir, "ca-dir", "", "directory holding ca.crt and ca.key (default --out)")
		fs.StringVar(&o.name, "name", "", "node name: the files are NAME.crt and NAME.key (required)")
		fs.Var(&o.hosts, "hosts", "IP addresses and DNS names the certificate is valid for (comma-separated or repeated)")
		fs.BoolVar(&o.force, "force", false, "overwrite existing files")
	case "cluster":
		fs.Var(&o.nodes, "node", "NAME=H1,H2,...: a node certificate to make, valid for those hosts (repeatable)")
	}
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), certsUsage+"\nFlags of chronicle certs "+sub+":\n")
		fs.PrintDefaults()
	}
	return fs, o
}

type certsOptions struct {
	out, caDir, name string
	hosts            listFlag
	nodes            repeatFlag
	force            bool
}

// repeatFlag is a repeatable flag whose values may contain commas.
type repeatFlag []string

func (r *repeatFlag) String() string     { return strings.Join(*r, " ") }
func (r *repeatFlag) Set(v string) error { *r = append(*r, v); return nil }

func certsCA(args []string, stdout, stderr io.Writer) error {
	fs, o := newCertsFlags("ca")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if o.out == "" {
		fmt.Fprintln(stderr, "chronicle certs ca: --out DIR is required")
		return errUsage
	}
	_, err := writeCA(o.out, o.name, o.force, stdout)
	return err
}

func certsNode(args []string, stdout, stderr io.Writer) error {
	fs, o := newCertsFlags("node")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	var missing []string
	for _, f := range []struct{ flag, v string }{{"--out", o.out}, {"--name", o.name}, {"--hosts", strings.Join(o.hosts, ",")}} {
		if f.v == "" {
			missing = append(missing, f.flag)
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(stderr, "chronicle certs node: %s required\n", strings.Join(missing, ", "))
		return errUsage
	}
	if o.caDir == "" {
		o.caDir = o.out
	}
	ca, err := readCA(o.caDir)
	if err != nil {
		return err
	}
	return writeNode(ca, o.out, o.name, o.hosts, o.force, stdout)
}

// certsCluster makes whatever of a CA and the node certificates is missing in --out,
// so that running it again (a restarted make cluster, a recreated compose project)
// keeps the certificates the nodes already use.
func certsCluster(args []string, stdout, stderr io.Writer) error {
	fs, o := newCertsFlags("cluster")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if o.out == "" || len(o.nodes) == 0 {
		fmt.Fprintln(stderr, "chronicle certs cluster: --out DIR and at least one --node NAME=HOSTS are required")
		return errUsage
	}
	type spec struct {
		name  string
		hosts []string
	}
	var specs []spec
	seen := map[string]bool{}
	for _, n := range o.nodes {
		name, hosts, ok := strings.Cut(n, "=")
		if !ok || !validCertName(name) || hosts == "" {
			return fmt.Errorf("certs cluster: --node %q: want NAME=HOST1,HOST2,... (NAME of letters, digits, '.', '_', '-')", n)
		}
		if seen[name] {
			return fmt.Errorf("certs cluster: node %s given twice", name)
		}
		seen[name] = true
		var hl listFlag
		_ = hl.Set(hosts)
		specs = append(specs, spec{name, hl})
	}
	var ca *pki.CA
	crt, key := filepath.Join(o.out, "ca.crt"), filepath.Join(o.out, "ca.key")
	switch have, err := existing(crt, key); {
	case err != nil:
		return fmt.Errorf("certs cluster: %w", err)
	case len(have) == 2:
		if ca, err = readCA(o.out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "keeping the CA %s\n", crt)
	case len(have) == 1:
		return fmt.Errorf("certs cluster: %s exists without its pair; remove it or restore the other", have[0])
	default:
		if ca, err = writeCA(o.out, "Chronicle cluster CA", false, stdout); err != nil {
			return err
		}
	}
	for _, s := range specs {
		crt, key := filepath.Join(o.out, s.name+".crt"), filepath.Join(o.out, s.name+".key")
		have, err := existing(crt, key)
		switch {
		case err != nil:
			return fmt.Errorf("certs cluster: %w", err)
		case len(have) == 2:
			fmt.Fprintf(stdout, "keeping %s\n", crt)
			continue
		case len(have) == 1:
			return fmt.Errorf("certs cluster: %s exists without its pair; remove it or restore the other", have[0])
		}
		if err := writeNode(ca, o.out, s.name, s.hosts, false, stdout); err != nil {
			return err
		}
	}
	return nil
}

func validCertName(s string) bool {
	if s == "" || len(s) > 64 || s == "ca" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return s[0] != '.'
}

func writeCA(dir, name string, force bool, stdout io.Writer) (*pki.CA, error) {
	ca, pair, err := pki.NewCA(name, pki.CAValidity)
	if err != nil {
		return nil, err
	}
	crt, key := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := writePair(crt, key, pair, force); err != nil {
		return nil, fmt.Errorf("certs ca: %w", err)
	}
	fmt.Fprintf(stdout, "wrote the CA certificate %s and its key %s (valid until %s); keep the key off the nodes where you can\n",
		crt, key, ca.Cert.NotAfter.Format(time.DateOnly))
	return ca, nil
}

func readCA(dir string) (*pki.CA, error) {
	crt, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("certs: read the CA (make one with chronicle certs ca --out %s): %w", dir, err)
	}
	key, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		return nil, fmt.Errorf("certs: read the CA key: %w", err)
	}
	ca, err := pki.ParseCA(crt, key)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", dir, err)
	}
	return ca, nil
}

func writeNode(ca *pki.CA, dir, name string, hosts []string, force bool, stdout io.Writer) error {
	if !validCertName(name) {
		return fmt.Errorf("certs node: --name %q: want letters, digits, '.', '_' or '-' (and not \"ca\")", name)
	}
	pair, err := ca.Issue(name, hosts, pki.NodeValidity)
	if err != nil {
		return err
	}
	crt, key := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := writePair(crt, key, pair, force); err != nil {
		return fmt.Errorf("certs node: %w", err)
	}
	sorted := append([]string(nil), hosts...)
	sort.Strings(sorted)
	fmt.Fprintf(stdout, "wrote %s and %s for %s (hosts %s), signed by %q\n", crt, key, name, strings.Join(sorted, ", "), ca.Cert.Subject.CommonName)
	return nil
}

// writePair writes a certificate (0644) and its key (0600), refusing to overwrite either
// unless force; both are checked before either is written.
func writePair(crt, key string, pair pki.Pair, force bool) error {
	if err := os.MkdirAll(filepath.Dir(crt), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(crt), err)
	}
	if !force {
		have, err := existing(crt, key)
		if err != nil {
			return err
		}
		if len(have) > 0 {
			if len(have) == 1 {
				return fmt.Errorf("%s already exists; not overwriting it without --force", have[0])
			}
			return fmt.Errorf("%s already exist; not overwriting them without --force", strings.Join(have, " and "))
		}
	}
	if err := writeFile(key, pair.KeyPEM, 0o600, force); err != nil {
		return err
	}
	return writeFile(crt, pair.CertPEM, 0o644, force)
}

func writeFile(path string, data []byte, mode os.FileMode, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// An overwritten file keeps its old mode otherwise.
	if err := f.Chmod(mode); err != nil {
		_ = f.Close()
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

// existing lists which of paths exist.
func existing(paths ...string) ([]string, error) {
	var have []string
	for _, p := range paths {
		_, err := os.Stat(p)
		switch {
		case err == nil:
			have = append(have, p)
		case !errors.Is(err, fs.ErrNotExist):
			return nil, err
		}
	}
	return have, nil
}
