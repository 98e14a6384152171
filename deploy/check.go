// Package deploy holds Chronicle's deployment files — deploy/Dockerfile and the compose
// files under deploy/compose — and the checks their tests run on them. There is no
// container runtime where they are tested, so the checks read the files the way Docker
// would and hold every command line to the chronicle binary's real flags, which the
// caller supplies (cmd/chronicle's tests pass the binary's own flag sets).
package deploy

import (
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed Dockerfile compose/*.yml prometheus/*.yml grafana
var files embed.FS

// Files is the deployment files: "Dockerfile", "compose/*.yml", and what the compose
// files mount from the repository: "prometheus/*.yml" and "grafana/...".
func Files() fs.FS { return files }

// ComposeFiles lists the compose files in Files.
func ComposeFiles() ([]string, error) {
	names, err := fs.Glob(files, "compose/*.yml")
	if err != nil {
		return nil, fmt.Errorf("deploy: list compose files: %w", err)
	}
	return names, nil
}

// Binary describes the chronicle binary's command line to the checks.
type Binary struct {
	// Flags returns a fresh flag set for the command that args starts with ("serve",
	// "health", "cluster status", …) and the arguments after the command's words, or an
	// error when there is no such command.
	Flags func(args []string) (fs *flag.FlagSet, rest []string, err error)
	// EnvName is the environment variable that sets a flag when the command line does
	// not (data-dir: CHRONICLE_DATA_DIR).
	EnvName func(flag string) string
	// Version is the binary's version (node.Version); the Dockerfile's default VERSION
	// must equal it.
	Version string
}

// invocation is one parsed command line of the binary.
type invocation struct {
	command string // "serve", "health", "cluster status"
	fs      *flag.FlagSet
	given   []string // flags given on the command line or through the environment
}

func (inv *invocation) get(name string) string {
	if f := inv.fs.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

// parse parses args (the binary's arguments, without its name) with the binary's flag
// set for the command, then applies env the way the binary does: a CHRONICLE_* variable
// must name one of the command's flags (unless strict is false: a health check shares the
// node's environment) and is used only when the flag is not given.
func (b Binary) parse(args []string, env environment, strict bool) (*invocation, error) {
	if len(args) == 0 {
		return nil, errors.New("no command: say what runs (the image's CMD is the one-node default)")
	}
	fset, rest, err := b.Flags(args)
	if err != nil {
		return nil, err
	}
	fset.SetOutput(io.Discard)
	command := strings.Join(args[:len(args)-len(rest)], " ")
	if err := fset.Parse(rest); err != nil {
		return nil, fmt.Errorf("chronicle %s: %w", command, err)
	}
	if fset.NArg() > 0 {
		return nil, fmt.Errorf("chronicle %s: unexpected arguments %q", command, fset.Args())
	}
	inv := &invocation{command: command, fs: fset}
	fset.Visit(func(f *flag.Flag) { inv.given = append(inv.given, f.Name) })
	byEnv := map[string]*flag.Flag{}
	fset.VisitAll(func(f *flag.Flag) { byEnv[b.EnvName(f.Name)] = f })
	var errs []error
	for _, name := range sortedKeys(env) {
		if !strings.HasPrefix(name, "CHRONICLE_") {
			continue
		}
		f := byEnv[name]
		switch {
		case f == nil && !strict:
		case f == nil:
			errs = append(errs, fmt.Errorf("environment %s names no flag of chronicle %s", name, command))
		case slices.Contains(inv.given, f.Name):
			errs = append(errs, fmt.Errorf("environment %s and --%s both set: the flag wins, drop one", name, f.Name))
		case env[name].set:
			if err := f.Value.Set(env[name].value); err != nil {
				errs = append(errs, fmt.Errorf("environment %s=%q: %w", name, env[name].value, err))
			}
			inv.given = append(inv.given, f.Name)
		}
	}
	return inv, errors.Join(errs...)
}

// node is what a `chronicle serve` command line says about the node it starts.
type node struct {
	service    string
	id         string
	dataDir    string
	httpPort   int
	raftHost   string
	advertise  string
	join       []string
	ports      map[int]bool // container ports the node listens on
	clustering bool
	// stateful: the node keeps state under dataDir, which must then be on a volume.
	// Always for a Raft node; in SQL mode only with an embedded NATS server that it
	// publishes from, or an embedded Pebble read model.
	stateful bool
	sql      *sqlProcess // nil for a Raft node
	// tlsFiles are --tls-ca, --tls-cert and --tls-key when the node runs cluster TLS.
	tlsFiles []string
	// tokenFile is --bootstrap-token-file: when set, the node requires API tokens.
	tokenFile string
}

// tokenRun is a `chronicle token generate` service: the secret file it writes.
type tokenRun struct {
	service string
	out     string
}

// createRun is a `chronicle token create` one-shot: it asks a node (url, with the admin
// token in tokenFile) for a token of role and writes its secret to out, and with
// cacertOut a copy of the CA certificate cacert. The compose files make Prometheus'
// reader token with one.
type createRun struct {
	service, url, tokenFile, role, out, cacert, cacertOut string
}

// oneShots are the services of a file that make files others use.
type oneShots struct {
	certs   []certsRun
	tokens  []tokenRun
	creates []createRun
}

// certsRun is a `chronicle certs cluster` service: where it writes and for which nodes.
type certsRun struct {
	service string
	out     string
	nodes   map[string][]string // node name: hosts
}

// sqlProcess is what a `chronicle serve --store sql` command line says about the process.
type sqlProcess struct {
	role       string
	eventStore *url.URL
	readModel  *url.URL // nil: none (command role) or the embedded Pebble view
	natsURL    *url.URL // nil: the embedded NATS server
}

// Flags that only a Raft node reads: given with --store sql, they would do nothing.
var raftOnlyFlags = []string{"raft-addr", "join", "bootstrap-expect", "advertise-url", "snapshot-threshold", "trailing-logs"}

// checkServe checks one serve invocation on its own.
func checkServe(inv *invocation) (*node, []error) {
	switch store := inv.get("store"); store {
	case "sql":
		return checkSQLServe(inv)
	case "raft", "": // "": a binary without --store, Raft only
	default:
		return &node{ports: map[int]bool{}}, []error{fmt.Errorf("--store %q: want raft or sql", store)}
	}
	var errs []error
	n := &node{id: inv.get("node-id"), dataDir: inv.get("data-dir"), advertise: inv.get("advertise-url"), ports: map[int]bool{}, stateful: true}
	if role := inv.get("role"); role != "all" && role != "" {
		errs = append(errs, fmt.Errorf("--role %s needs --store sql: a Raft node serves every role", role))
	}
	for _, name := range []string{"event-store"} {
		if slices.Contains(inv.given, name) {
			errs = append(errs, fmt.Errorf("--%s without --store sql does nothing", name))
		}
	}
	if j := inv.get("join"); j != "" {
		n.join = strings.Split(j, ",")
	}
	expect, _ := strconv.Atoi(inv.get("bootstrap-expect"))
	n.clustering = len(n.join) > 0 || expect > 1
	if expect > 1 && len(n.join) == 0 {
		errs = append(errs, fmt.Errorf("--bootstrap-expect %d without --join: the node cannot find the others", expect))
	}
	if !path.IsAbs(n.dataDir) {
		errs = append(errs, fmt.Errorf("--data-dir %q: want an absolute path on a volume", n.dataDir))
	}

	httpHost, addrErrs := checkHTTPAddr(inv, n)
	errs = append(errs, addrErrs...)
	if isUnspecified(httpHost) && n.advertise == "" {
		errs = append(errs, fmt.Errorf("--http-addr %s listens on every interface: set --advertise-url, else the node records http://%s as its URL", inv.get("http-addr"), inv.get("http-addr")))
	}
	if n.advertise != "" {
		u, err := url.Parse(n.advertise)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--advertise-url %q: want http://host:port", n.advertise))
		} else if n.clustering && (isLoopback(u.Hostname()) || isUnspecified(u.Hostname())) {
			errs = append(errs, fmt.Errorf("--advertise-url %s: the other nodes cannot reach it", n.advertise))
		}
	}

	raftHost, raftPort, err := hostPort(inv.get("raft-addr"))
	if err != nil {
		errs = append(errs, fmt.Errorf("--raft-addr: %w", err))
	}
	n.raftHost = raftHost
	n.ports[raftPort] = true
	if isUnspecified(raftHost) {
		errs = append(errs, fmt.Errorf("--raft-addr %s: Raft advertises this address to its peers, so it must be a concrete host (the transport refuses 0.0.0.0)", inv.get("raft-addr")))
	}
	if n.clustering && isLoopback(raftHost) {
		errs = append(errs, fmt.Errorf("--raft-addr %s: a cluster member's Raft address must be reachable from the other nodes", inv.get("raft-addr")))
	}
	for _, name := range []string{"nats-listen", "pprof-addr"} {
		if v := inv.get(name); v != "" {
			if _, p, err := hostPort(v); err != nil {
				errs = append(errs, fmt.Errorf("--%s: %w", name, err))
			} else {
				n.ports[p] = true
			}
		}
	}
	if n.httpPort != 0 && n.httpPort == raftPort {
		errs = append(errs, fmt.Errorf("--http-addr and --raft-addr share port %d", n.httpPort))
	}
	errs = append(errs, checkServeTLS(inv, n)...)
	errs = append(errs, checkServeAuth(inv, n)...)
	return n, errs
}

// checkServeAuth is protected mode as the node applies it: a node with a listener other
// machines can reach (--http-addr, --raft-addr in Raft mode, --nats-listen) refuses to
// start without --bootstrap-token-file or --insecure. A binary without the flag has no
// protected mode.
func checkServeAuth(inv *invocation, n *node) []error {
	if inv.fs.Lookup("bootstrap-token-file") == nil {
		return nil
	}
	var errs []error
	n.tokenFile = inv.get("bootstrap-token-file")
	if n.tokenFile != "" && !path.IsAbs(n.tokenFile) {
		errs = append(errs, fmt.Errorf("--bootstrap-token-file %q: want an absolute path on a volume", n.tokenFile))
	}
	listeners := []string{"http-addr", "nats-listen"}
	if n.sql == nil {
		listeners = append(listeners, "raft-addr")
	}
	var open []string
	for _, name := range listeners {
		if v := inv.get(name); v != "" {
			if host, _, err := net.SplitHostPort(v); err == nil && !isLoopback(host) {
				open = append(open, "--"+name+" "+v)
			}
		}
	}
	if len(open) > 0 && n.tokenFile == "" && inv.get("insecure") != "true" {
		errs = append(errs, fmt.Errorf("%s can be reached from other machines, so the node refuses to start without authentication: "+
			"give --bootstrap-token-file FILE (on a volume: the node writes an admin token there at first start, or a one-shot "+
			"`chronicle token generate --out FILE` makes it), or --insecure to run without tokens", strings.Join(open, ", ")))
	}
	return errs
}

// tlsFlags are the cluster TLS flags, all three or none.
var tlsFlags = []string{"tls-ca", "tls-cert", "tls-key"}

// checkHTTPAddr records --http-addr's port on n and refuses a loopback address, which a
// container's published port cannot reach; it returns the host.
func checkHTTPAddr(inv *invocation, n *node) (string, []error) {
	var errs []error
	host, port, err := hostPort(inv.get("http-addr"))
	if err != nil {
		errs = append(errs, fmt.Errorf("--http-addr: %w", err))
	}
	n.httpPort = port
	n.ports[port] = true
	if isLoopback(host) {
		errs = append(errs, fmt.Errorf("--http-addr %s: loopback inside a container is unreachable from outside it", inv.get("http-addr")))
	}
	return host, errs
}

// checkServeTLS checks the TLS flags of a Raft node and that its URLs say https exactly
// when it serves HTTPS.
func checkServeTLS(inv *invocation, n *node) []error {
	var errs []error
	var files []string
	for _, name := range tlsFlags {
		if v := inv.get(name); v != "" {
			files = append(files, v)
			if !path.IsAbs(v) {
				errs = append(errs, fmt.Errorf("--%s %q: want an absolute path on a volume", name, v))
			}
		}
	}
	switch len(files) {
	case 0:
	case len(tlsFlags):
		n.tlsFiles = files
	default:
		return append(errs, errors.New("--tls-ca, --tls-cert and --tls-key go together: the node refuses to start with only some"))
	}
	want := "http"
	if n.tlsFiles != nil {
		want = "https"
	}
	if u, err := url.Parse(n.advertise); err == nil && n.advertise != "" && u.Scheme != want {
		errs = append(errs, fmt.Errorf("--advertise-url %s: the node serves %s", n.advertise, want))
	}
	for _, j := range n.join {
		if u, err := url.Parse(j); err == nil && u.Scheme != want {
			errs = append(errs, fmt.Errorf("--join %s: with%s cluster TLS the nodes serve %s", j, map[bool]string{true: "", false: "out"}[want == "https"], want))
		}
	}
	return errs
}

// checkSQLServe checks a process of the SQL topology (--store sql): it keeps no Raft
// state, so it needs no Raft address, advertised URL or data volume, unless it keeps
// an embedded NATS server it publishes from or an embedded Pebble view.
func checkSQLServe(inv *invocation) (*node, []error) {
	var errs []error
	p := &sqlProcess{role: inv.get("role")}
	n := &node{id: inv.get("node-id"), dataDir: inv.get("data-dir"), ports: map[int]bool{}, sql: p}
	for _, name := range raftOnlyFlags {
		if slices.Contains(inv.given, name) {
			errs = append(errs, fmt.Errorf("--%s with --store sql does nothing: there is no Raft in SQL mode", name))
		}
	}
	switch p.role {
	case "all", "command", "query":
	default:
		errs = append(errs, fmt.Errorf("--role %q: want all, command or query", p.role))
	}
	if es := inv.get("event-store"); es == "" {
		errs = append(errs, errors.New("--store sql without --event-store: say which CockroachDB or PostgreSQL holds the log"))
	} else if u, err := postgresURL(es); err != nil {
		errs = append(errs, fmt.Errorf("--event-store: %w", err))
	} else {
		p.eventStore = u
	}
	rm := inv.get("read-model")
	switch {
	case p.role == "command" && slices.Contains(inv.given, "read-model"):
		errs = append(errs, fmt.Errorf("--read-model %s with --role command does nothing: a command process keeps no read model", rm))
	case p.role == "command":
	case rm == "pebble":
		n.stateful = true
	default:
		if u, err := postgresURL(rm); err != nil {
			errs = append(errs, fmt.Errorf("--read-model: %w", err))
		} else {
			p.readModel = u
		}
	}
	if nu := inv.get("nats-url"); nu != "" {
		u, err := url.Parse(nu)
		if err != nil || u.Scheme != "nats" || u.Hostname() == "" {
			errs = append(errs, fmt.Errorf("--nats-url %q: want nats://host:port", nu))
		} else {
			p.natsURL = u
		}
	} else if p.role != "query" {
		n.stateful = true // publishes into its own embedded JetStream under --data-dir
	}
	if n.stateful && !path.IsAbs(n.dataDir) {
		errs = append(errs, fmt.Errorf("--data-dir %q: want an absolute path on a volume (this process keeps state there)", n.dataDir))
	}

	_, addrErrs := checkHTTPAddr(inv, n)
	errs = append(errs, addrErrs...)
	for _, name := range []string{"nats-listen", "pprof-addr"} {
		if v := inv.get(name); v != "" {
			if _, p, err := hostPort(v); err != nil {
				errs = append(errs, fmt.Errorf("--%s: %w", name, err))
			} else {
				n.ports[p] = true
			}
		}
	}
	errs = append(errs, checkServeAuth(inv, n)...)
	return n, errs
}

// postgresURL parses a postgres:// connection URL that names its host.
func postgresURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Hostname() == "" {
		return nil, fmt.Errorf("%q: want postgres://user@host:port/database", redactURL(s))
	}
	return u, nil
}

// redactURL hides a password in a URL for messages.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return s
}

// checkHealth checks a health check's command (the arguments after "chronicle") against
// the node it checks.
func checkHealth(b Binary, args []string, env environment, n *node) error {
	if len(args) == 0 || args[0] != "health" {
		return fmt.Errorf("health check runs %q: want chronicle health (the image has no curl and no shell)", args)
	}
	inv, err := b.parse(args, env, false)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	u, err := url.Parse(inv.get("url"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("health check --url %q: want http://127.0.0.1:PORT", inv.get("url"))
	}
	switch {
	case n != nil && n.tlsFiles != nil && u.Scheme != "https":
		return fmt.Errorf("health check --url %s: the node serves HTTPS (--tls-cert); check https://127.0.0.1:%d with --cacert", u, n.httpPort)
	case n != nil && n.tlsFiles == nil && u.Scheme == "https":
		return fmt.Errorf("health check --url %s: the node serves plain HTTP", u)
	case u.Scheme == "https" && inv.get("cacert") == "":
		return fmt.Errorf("health check --url %s without --cacert: the node's certificate is signed by the cluster CA, which the image does not trust", u)
	}
	if !isLoopback(u.Hostname()) {
		return fmt.Errorf("health check --url %s: check the node in its own container (127.0.0.1)", u)
	}
	if p, _ := strconv.Atoi(u.Port()); n != nil && p != n.httpPort {
		return fmt.Errorf("health check --url %s: the node's --http-addr port is %d", u, n.httpPort)
	}
	if d, err := time.ParseDuration(inv.get("timeout")); err == nil && d <= 0 {
		return fmt.Errorf("health check --timeout %s: want a positive duration", d)
	}
	return nil
}

// hostPort splits host:port and checks the port.
func hostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q: %w", addr, err)
	}
	port, err := portNumber(p)
	if err != nil {
		return "", 0, fmt.Errorf("%q: %w", addr, err)
	}
	return host, port, nil
}

func isUnspecified(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || (ip != nil && ip.IsUnspecified())
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// CheckCompose checks one compose file against the binary; the error joins every
// problem found.
func CheckCompose(data []byte, b Binary) error { return CheckComposeFS(data, b, files) }

// CheckComposeFS is CheckCompose with the deployment files (what the compose file's bind
// mounts name, relative to compose/) taken from repo instead of Files().
func CheckComposeFS(data []byte, b Binary, repo fs.FS) error {
	f, err := parseCompose(data)
	if err != nil {
		return err
	}
	if len(f.Services) == 0 {
		return errors.New("no services")
	}
	var errs []error
	fail := func(svc string, err error) { errs = append(errs, fmt.Errorf("service %s: %w", svc, err)) }

	// names: every name a service answers to on its networks.
	names := map[string]string{}
	for _, name := range sortedKeys(f.Services) {
		s := f.Services[name]
		if s == nil {
			fail(name, errors.New("empty"))
			delete(f.Services, name)
			continue
		}
		names[name] = name
		if s.Hostname != "" {
			names[s.Hostname] = name
		}
		for _, nw := range s.Networks {
			for _, a := range nw.Aliases {
				names[a] = name
			}
			if nw.IPv4Address != "" {
				names[nw.IPv4Address] = name
			}
		}
	}

	nodes := map[string]*node{}
	var runs oneShots
	var clients []clientRun
	for _, name := range sortedKeys(f.Services) {
		s := f.Services[name]
		for _, err := range checkService(b, f, s) {
			fail(name, err)
		}
		if !isChronicle(s) {
			continue
		}
		inv, err := b.parse(s.Command, s.Environment, true)
		if err != nil {
			fail(name, err)
			continue
		}
		hc := s.Healthcheck
		if inv.command == "certs cluster" {
			run, err := checkCertsRun(name, s, inv)
			if err != nil {
				fail(name, err)
			} else {
				runs.certs = append(runs.certs, run)
			}
		}
		if inv.command == "token generate" {
			run, err := checkTokenRun(name, s, inv)
			if err != nil {
				fail(name, err)
			} else {
				runs.tokens = append(runs.tokens, run)
			}
		}
		if inv.command == "token create" {
			run, errs := checkTokenCreateRun(name, s, inv)
			for _, err := range errs {
				fail(name, err)
			}
			runs.creates = append(runs.creates, run)
		}
		if inv.command == "cluster status" || inv.command == "token create" {
			clients = append(clients, clientRun{service: name, url: inv.get("url"), tokenFile: inv.get("token-file"), token: inv.get("token"), cacert: inv.get("cacert")})
		}
		if inv.command != "serve" {
			if hc != nil && !hc.Disable {
				if err := checkHealthTest(b, hc.Test, s.Environment, nil); err != nil {
					fail(name, err)
				}
			}
			continue
		}
		n, serveErrs := checkServe(inv)
		n.service = name
		nodes[name] = n
		for _, err := range serveErrs {
			fail(name, err)
		}
		if n.stateful && !slices.ContainsFunc(s.Volumes, func(m mount) bool { return m.Source != "" && within(n.dataDir, m.Target) }) {
			fail(name, fmt.Errorf("--data-dir %s is on no named volume or bind mount: its state would go with the container", n.dataDir))
		}
		if hc == nil || hc.Disable {
			fail(name, errors.New("a node needs a health check running chronicle health"))
		} else if err := checkHealthTest(b, hc.Test, s.Environment, n); err != nil {
			fail(name, err)
		}
		for _, p := range s.Ports {
			for _, c := range p.Container {
				if !n.ports[c] {
					fail(name, fmt.Errorf("publishes container port %d, where the node does not listen", c))
				}
			}
		}
	}

	errs = append(errs, checkHostPorts(f)...)
	errs = append(errs, checkCluster(f, nodes, names)...)
	errs = append(errs, checkTLS(f, nodes, runs.certs)...)
	errs = append(errs, checkAuth(f, nodes, runs.tokens)...)
	errs = append(errs, checkClients(f, nodes, names, runs.tokens, clients)...)
	errs = append(errs, checkSQLTopology(f, nodes, names)...)
	errs = append(errs, checkMonitoring(f, repo, nodes, names, runs)...)
	return errors.Join(errs...)
}

// isChronicle tells a service that runs the chronicle image.
func isChronicle(s *service) bool {
	return s.Build != nil || strings.Contains(s.Image, "chronicle")
}

// checkService checks what any service's settings refer to.
func checkService(b Binary, f *composeFile, s *service) []error {
	var errs []error
	if isChronicle(s) {
		if s.Build != nil && s.Build.Dockerfile != "deploy/Dockerfile" {
			errs = append(errs, fmt.Errorf("build.dockerfile %q: want deploy/Dockerfile (with the repository root as context)", s.Build.Dockerfile))
		}
		if len(s.Entrypoint) > 0 && !slices.Equal(s.Entrypoint, []string{"chronicle"}) {
			errs = append(errs, fmt.Errorf("entrypoint %q: the image's is chronicle; leave it", s.Entrypoint))
		}
		if u, _, _ := strings.Cut(s.User, ":"); u == "0" || u == "root" {
			errs = append(errs, errors.New("runs as root: the image's user is non-root"))
		}
	}
	for _, dep := range sortedKeys(s.DependsOn) {
		target, ok := f.Services[dep]
		switch cond := s.DependsOn[dep]; {
		case !ok:
			errs = append(errs, fmt.Errorf("depends_on %s: no such service", dep))
		case target == s:
			errs = append(errs, fmt.Errorf("depends_on %s: itself", dep))
		case cond != "service_started" && cond != "service_healthy" && cond != "service_completed_successfully":
			errs = append(errs, fmt.Errorf("depends_on %s: condition %q is not one Compose knows", dep, cond))
		case cond == "service_healthy" && (target.Healthcheck == nil || target.Healthcheck.Disable):
			errs = append(errs, fmt.Errorf("depends_on %s: service_healthy, but %s has no health check", dep, dep))
		}
	}
	for _, m := range s.Volumes {
		if !strings.HasPrefix(m.Target, "/") {
			errs = append(errs, fmt.Errorf("volume target %q: want an absolute path", m.Target))
		}
		if m.Type == "volume" && m.Source != "" {
			if _, ok := f.Volumes[m.Source]; !ok {
				errs = append(errs, fmt.Errorf("volume %s is not declared under the top-level volumes", m.Source))
			}
		}
	}
	for _, nw := range sortedKeys(s.Networks) {
		if _, ok := f.Networks[nw]; !ok && nw != "default" {
			errs = append(errs, fmt.Errorf("network %s is not declared under the top-level networks", nw))
		}
	}
	return errs
}

// checkHealthTest checks a compose health check's test.
func checkHealthTest(b Binary, t healthTest, env environment, n *node) error {
	args := []string(t.args)
	switch {
	case t.shell || (len(args) > 0 && args[0] == "CMD-SHELL"):
		return errors.New("health check: CMD-SHELL needs a shell and the image has none; write [\"CMD\", \"chronicle\", \"health\", ...]")
	case len(args) < 2 || args[0] != "CMD" || args[1] != "chronicle":
		return fmt.Errorf("health check %q: want [\"CMD\", \"chronicle\", \"health\", ...]", args)
	}
	return checkHealth(b, args[2:], env, n)
}

// checkHostPorts refuses two services publishing the same host port.
func checkHostPorts(f *composeFile) []error {
	type key struct {
		port  int
		proto string
	}
	type use struct{ service, ip string }
	seen := map[key][]use{}
	var errs []error
	for _, name := range sortedKeys(f.Services) {
		for _, p := range f.Services[name].Ports {
			for _, h := range p.Host {
				k := key{h, p.Protocol}
				for _, u := range seen[k] {
					if u.ip == p.HostIP || isUnspecified(u.ip) || isUnspecified(p.HostIP) {
						errs = append(errs, fmt.Errorf("services %s and %s both publish host port %d/%s", u.service, name, h, p.Protocol))
					}
				}
				seen[k] = append(seen[k], use{name, p.HostIP})
			}
		}
	}
	return errs
}

// checkCluster checks the nodes against each other: their own state, distinct ids, and
// addresses that name themselves and peers that exist.
func checkCluster(f *composeFile, nodes map[string]*node, names map[string]string) []error {
	var errs []error
	ids := map[string]string{}
	volumes := map[string]string{}
	for _, name := range sortedKeys(nodes) {
		n := nodes[name]
		if n.sql == nil { // Raft ids; the processes of a SQL topology need no distinct ids
			if other, ok := ids[n.id]; ok {
				errs = append(errs, fmt.Errorf("services %s and %s are both node %s", other, name, n.id))
			}
			ids[n.id] = name
		}
		for _, m := range f.Services[name].Volumes {
			if m.Source == "" || !within(n.dataDir, m.Target) {
				continue
			}
			if other, ok := volumes[m.Source]; ok {
				errs = append(errs, fmt.Errorf("services %s and %s keep their data on the same volume %s", other, name, m.Source))
			}
			volumes[m.Source] = name
		}
		if !n.clustering {
			continue
		}
		fail := func(err error) { errs = append(errs, fmt.Errorf("service %s: %w", name, err)) }
		if names[n.raftHost] != name {
			fail(fmt.Errorf("--raft-addr host %q is not this service's name or address", n.raftHost))
		}
		if u, err := url.Parse(n.advertise); err == nil && names[u.Hostname()] != name {
			fail(fmt.Errorf("--advertise-url %s does not name this service", n.advertise))
		}
		fixed := false
		for _, nw := range f.Services[name].Networks {
			fixed = fixed || nw.IPv4Address != ""
		}
		if !fixed {
			fail(errors.New("a cluster member needs a fixed ipv4_address: Raft records the address --raft-addr resolves to when the node starts"))
		}
		for _, j := range n.join {
			u, err := url.Parse(j)
			if err != nil || u.Host == "" {
				fail(fmt.Errorf("--join %q: want http://host:port", j))
				continue
			}
			peer, ok := nodes[names[u.Hostname()]]
			if !ok {
				fail(fmt.Errorf("--join %s: no node in this file answers to %s", j, u.Hostname()))
				continue
			}
			if p, _ := strconv.Atoi(u.Port()); p != peer.httpPort {
				fail(fmt.Errorf("--join %s: %s's API listens on port %d", j, peer.service, peer.httpPort))
			}
		}
	}
	return errs
}

// within tells whether dir is target or below it.
func within(dir, target string) bool {
	dir, target = path.Clean(dir), path.Clean(target)
	return dir == target || strings.HasPrefix(dir, strings.TrimSuffix(target, "/")+"/")
}

// checkSQLTopology checks the processes of a SQL topology against the file: the
// databases and NATS they name are services here (or external hosts), each started
// before them through depends_on; they share one event store; and it has a process
// that takes commands and one that serves reads.
func checkSQLTopology(f *composeFile, nodes map[string]*node, names map[string]string) []error {
	var errs []error
	var store *url.URL
	var storeBy string
	roles := map[string]bool{}
	for _, name := range sortedKeys(nodes) {
		p := nodes[name].sql
		if p == nil {
			continue
		}
		roles[p.role] = true
		fail := func(err error) { errs = append(errs, fmt.Errorf("service %s: %w", name, err)) }
		for _, d := range []struct {
			flag string
			u    *url.URL
		}{{"event-store", p.eventStore}, {"read-model", p.readModel}, {"nats-url", p.natsURL}} {
			flagName, u := d.flag, d.u
			if u == nil {
				continue
			}
			host := u.Hostname()
			switch target, ok := names[host]; {
			case isLoopback(host) || isUnspecified(host):
				fail(fmt.Errorf("--%s %s: %s inside a container is the container itself", flagName, u.Redacted(), host))
			case ok && target == name:
				fail(fmt.Errorf("--%s %s names this service itself", flagName, u.Redacted()))
			case ok && !dependsOnTransitively(f, name, target):
				fail(fmt.Errorf("--%s %s: %s is not among its depends_on (directly or through another service), so nothing starts it first", flagName, u.Redacted(), target))
			case !ok && !strings.Contains(host, ".") && net.ParseIP(host) == nil:
				fail(fmt.Errorf("--%s %s: no service in this file answers to %s", flagName, u.Redacted(), host))
			}
		}
		if p.eventStore == nil {
			continue
		}
		if store == nil {
			store, storeBy = p.eventStore, name
		} else if store.Host != p.eventStore.Host || path.Clean(store.Path) != path.Clean(p.eventStore.Path) {
			fail(fmt.Errorf("--event-store %s: %s uses %s; the processes of one topology share one event store", p.eventStore.Redacted(), storeBy, store.Redacted()))
		}
	}
	if len(roles) > 0 && !roles["all"] {
		if !roles["command"] {
			errs = append(errs, errors.New("SQL topology without a process that takes commands (--role command or all)"))
		}
		if !roles["query"] {
			errs = append(errs, errors.New("SQL topology without a process that serves reads (--role query or all)"))
		}
	}
	return errs
}

// dependsOnTransitively tells whether service from waits for target through its
// depends_on, directly or through the services it depends on.
func dependsOnTransitively(f *composeFile, from, target string) bool {
	seen := map[string]bool{}
	stack := []string{from}
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[s] {
			continue
		}
		seen[s] = true
		svc := f.Services[s]
		if svc == nil {
			continue
		}
		for dep := range svc.DependsOn {
			if dep == target {
				return true
			}
			stack = append(stack, dep)
		}
	}
	return false
}

// checkCertsRun reads a `chronicle certs cluster` service: it must write to a volume it
// mounts read-write.
func checkCertsRun(name string, s *service, inv *invocation) (certsRun, error) {
	run := certsRun{service: name, out: inv.get("out"), nodes: map[string][]string{}}
	if m, ok := mountOf(s, run.out); !ok || m.Source == "" || m.ReadOnly {
		return run, fmt.Errorf("chronicle certs --out %q: want a directory on a named volume mounted read-write, which the nodes mount too", run.out)
	}
	for _, spec := range strings.Fields(inv.get("node")) {
		n, hosts, _ := strings.Cut(spec, "=")
		run.nodes[n] = strings.Split(hosts, ",")
	}
	return run, nil
}

// mountOf is the mount of s that holds path.
func mountOf(s *service, p string) (mount, bool) {
	for _, m := range s.Volumes {
		if m.Target != "" && within(p, m.Target) {
			return m, true
		}
	}
	return mount{}, false
}

// checkTLS checks cluster TLS across services: every cluster member runs it; its files
// are on a volume; when a certs service in the file makes them, the node waits for it
// to complete and its certificate lists the names the node is reached by.
func checkTLS(f *composeFile, nodes map[string]*node, certs []certsRun) []error {
	var errs []error
	for _, name := range sortedKeys(nodes) {
		n := nodes[name]
		fail := func(err error) { errs = append(errs, fmt.Errorf("service %s: %w", name, err)) }
		if n.sql != nil {
			continue
		}
		if n.tlsFiles == nil {
			if n.clustering {
				fail(errors.New("a cluster member needs --tls-ca, --tls-cert and --tls-key: without them anyone who reaches its Raft port can append to the log, and anyone who reaches its API can change the membership"))
			}
			continue
		}
		s := f.Services[name]
		for i, file := range n.tlsFiles {
			m, ok := mountOf(s, file)
			if !ok || m.Source == "" {
				fail(fmt.Errorf("--%s %s is on no volume this service mounts", tlsFlags[i], file))
				continue
			}
			for _, run := range certs {
				om, _ := mountOf(f.Services[run.service], run.out)
				if om.Source != m.Source {
					continue
				}
				if f.Services[name].DependsOn[run.service] != "service_completed_successfully" {
					fail(fmt.Errorf("--%s %s is made by %s: depend on it with condition service_completed_successfully", tlsFlags[i], file, run.service))
				}
				if tlsFlags[i] != "tls-cert" {
					continue
				}
				certName := strings.TrimSuffix(path.Base(file), ".crt")
				hosts, ok := run.nodes[certName]
				if !ok {
					fail(fmt.Errorf("--tls-cert %s: %s makes no certificate %s (its --node flags)", file, run.service, certName))
					continue
				}
				want := []string{"127.0.0.1"} // the health check's
				if u, err := url.Parse(n.advertise); err == nil && u.Hostname() != "" {
					want = append(want, u.Hostname()) // peers verify it when they call this node
				}
				for _, h := range want {
					if !slices.Contains(hosts, h) {
						fail(fmt.Errorf("--tls-cert %s: %s's certificate %s does not list host %s", file, run.service, certName, h))
					}
				}
			}
		}
	}
	return errs
}

// checkTokenRun reads a `chronicle token generate` service: it must write to a volume it
// mounts read-write, at an absolute path.
func checkTokenRun(name string, s *service, inv *invocation) (tokenRun, error) {
	run := tokenRun{service: name, out: inv.get("out")}
	if !path.IsAbs(run.out) {
		return run, fmt.Errorf("chronicle token generate --out %q: want an absolute path on a named volume mounted read-write, which the nodes mount too", run.out)
	}
	if m, ok := mountOf(s, run.out); !ok || m.Source == "" || m.ReadOnly {
		return run, fmt.Errorf("chronicle token generate --out %s: want a file on a named volume mounted read-write, which the nodes mount too", run.out)
	}
	return run, nil
}

// checkTokenCreateRun reads a `chronicle token create` service: a one-shot has nowhere
// useful to print a secret (its log would keep it), so it writes it with --out, like
// --cacert-out the certificate, to a named volume it mounts read-write; its role is one
// the API knows.
func checkTokenCreateRun(name string, s *service, inv *invocation) (createRun, []error) {
	run := createRun{service: name, url: inv.get("url"), tokenFile: inv.get("token-file"), role: inv.get("role"),
		out: inv.get("out"), cacert: inv.get("cacert"), cacertOut: inv.get("cacert-out")}
	var errs []error
	if run.out == "" {
		errs = append(errs, errors.New("chronicle token create without --out: a one-shot would print the secret into its log; write it to a file on a volume with --out"))
	}
	for _, f := range []struct{ flag, file string }{{"out", run.out}, {"cacert-out", run.cacertOut}} {
		if f.file == "" {
			continue
		}
		if m, ok := mountOf(s, f.file); !path.IsAbs(f.file) || !ok || m.Source == "" || m.ReadOnly {
			errs = append(errs, fmt.Errorf("chronicle token create --%s %q: want an absolute path on a named volume mounted read-write", f.flag, f.file))
		}
	}
	if run.cacertOut != "" && run.cacert == "" {
		errs = append(errs, errors.New("chronicle token create --cacert-out copies --cacert: give both"))
	}
	switch run.role {
	case "admin", "writer", "reader":
	default:
		errs = append(errs, fmt.Errorf("chronicle token create --role %q: want admin, writer or reader", run.role))
	}
	return run, errs
}

// volumeFile names a file by the volume that holds it and its path inside the volume, so
// that services mounting the volume at different places agree on it.
type volumeFile struct{ source, rel string }

// fileOn is where file lies for service s: the mount's source and the path below it.
func fileOn(s *service, file string) (volumeFile, mount, bool) {
	m, ok := mountOf(s, file)
	if !ok || m.Source == "" {
		return volumeFile{}, m, false
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(path.Clean(file), path.Clean(m.Target)), "/")
	return volumeFile{m.Source, rel}, m, true
}

// producer is the token generate service of f that writes vf, and any that writes
// another file on the same volume.
func producer(f *composeFile, tokens []tokenRun, vf volumeFile) (exact, sameVolume *tokenRun) {
	for i := range tokens {
		out, _, ok := fileOn(f.Services[tokens[i].service], tokens[i].out)
		switch {
		case !ok || out.source != vf.source:
		case out.rel == vf.rel:
			return &tokens[i], nil
		default:
			sameVolume = &tokens[i]
		}
	}
	return nil, sameVolume
}

// checkAuth checks the nodes' --bootstrap-token-file across services: the file lies on a
// volume the node mounts (a secret in the container's own layer would be lost with it, and
// nobody could fetch it); a file a `token generate` service makes is waited for; a file
// nothing makes is one the node can write. Nodes sharing one token table (the members of
// a Raft cluster, the processes of a SQL topology) share one generated file: each would
// otherwise write a secret of its own, and only the one that made the first token would
// work, without saying which.
func checkAuth(f *composeFile, nodes map[string]*node, tokens []tokenRun) []error {
	var errs []error
	type use struct {
		service string
		file    volumeFile
		made    bool
	}
	var shared []use
	for _, name := range sortedKeys(nodes) {
		n := nodes[name]
		if n.tokenFile == "" {
			continue
		}
		failed := false
		fail := func(err error) {
			errs = append(errs, fmt.Errorf("service %s: %w", name, err))
			failed = true
		}
		if !path.IsAbs(n.tokenFile) {
			continue // said by checkServeAuth
		}
		s := f.Services[name]
		vf, m, ok := fileOn(s, n.tokenFile)
		if !ok {
			fail(fmt.Errorf("--bootstrap-token-file %s is on no volume this service mounts: the admin token would be lost with the container, and could not be fetched", n.tokenFile))
			continue
		}
		exact, other := producer(f, tokens, vf)
		switch {
		case exact != nil && s.DependsOn[exact.service] != "service_completed_successfully":
			fail(fmt.Errorf("--bootstrap-token-file %s is made by %s: depend on it with condition service_completed_successfully", n.tokenFile, exact.service))
		case exact == nil && other != nil:
			fail(fmt.Errorf("--bootstrap-token-file %s: %s writes %s on that volume, not this file", n.tokenFile, other.service, other.out))
		case exact == nil && m.ReadOnly:
			fail(fmt.Errorf("--bootstrap-token-file %s is on a read-only mount and no `chronicle token generate` service of this file makes it: the node cannot write a new one there", n.tokenFile))
		}
		if !failed && (n.clustering || n.sql != nil) {
			shared = append(shared, use{name, vf, exact != nil})
		}
	}
	if len(shared) < 2 {
		return errs
	}
	for _, u := range shared {
		switch {
		case !u.made:
			errs = append(errs, fmt.Errorf("service %s: --bootstrap-token-file %s: the nodes of this file share one token table, so give them all one file made by a one-shot `chronicle token generate` service: otherwise each node writes a secret of its own, and only the one whose node founds the table becomes the admin token, without saying which", u.service, nodes[u.service].tokenFile))
		case u.file != shared[0].file:
			errs = append(errs, fmt.Errorf("service %s: --bootstrap-token-file %s is not the file %s uses (%s): the nodes share one token table, give them one file", u.service, nodes[u.service].tokenFile, shared[0].service, nodes[shared[0].service].tokenFile))
		}
	}
	return errs
}

// clientRun is a chronicle command of the file that calls a node's API (cluster status,
// token create).
type clientRun struct {
	service, url, tokenFile, token, cacert string
}

// checkClients checks the one-shots that call a node: the URL names a node of the file at
// its API port, with the scheme it serves (and --cacert, its --tls-ca, over HTTPS); the
// one-shot waits for the node to be healthy; a node that requires tokens is asked with
// --token-file, a file on a volume the one-shot mounts, waited for when a `token
// generate` service of the file makes it.
func checkClients(f *composeFile, nodes map[string]*node, names map[string]string, tokens []tokenRun, clients []clientRun) []error {
	var errs []error
	for _, c := range clients {
		fail := func(err error) { errs = append(errs, fmt.Errorf("service %s: %w", c.service, err)) }
		if c.token != "" {
			fail(errors.New("--token (or CHRONICLE_TOKEN) writes the secret into the compose file: use --token-file with the file on a volume"))
			continue
		}
		u, err := url.Parse(c.url)
		if err != nil || u.Host == "" {
			fail(fmt.Errorf("--url %q: want http://service:port", c.url))
			continue
		}
		n := nodes[names[u.Hostname()]]
		if n == nil {
			fail(fmt.Errorf("--url %s: no chronicle serve of this file answers to %s", c.url, u.Hostname()))
			continue
		}
		errs = append(errs, checkClientReach(f, c, u, n)...)
		if c.tokenFile == "" {
			if n.tokenFile != "" {
				fail(fmt.Errorf("asks %s, which requires an API token (--bootstrap-token-file %s), without --token-file: it would get 401 unauthorized", n.service, n.tokenFile))
			}
			continue
		}
		if !path.IsAbs(c.tokenFile) {
			fail(fmt.Errorf("--token-file %q: want an absolute path on a volume", c.tokenFile))
			continue
		}
		s := f.Services[c.service]
		vf, _, ok := fileOn(s, c.tokenFile)
		if !ok {
			fail(fmt.Errorf("--token-file %s is on no volume this service mounts", c.tokenFile))
			continue
		}
		if exact, _ := producer(f, tokens, vf); exact != nil && !dependsOnTransitively(f, c.service, exact.service) {
			fail(fmt.Errorf("--token-file %s is made by %s, which is not among its depends_on (directly or through another service)", c.tokenFile, exact.service))
		}
		if n.tokenFile != "" {
			if nf, _, ok := fileOn(f.Services[n.service], n.tokenFile); ok && nf != vf {
				if exact, _ := producer(f, tokens, nf); exact != nil {
					fail(fmt.Errorf("--token-file %s is not the admin token %s uses (%s, made by %s)", c.tokenFile, n.service, n.tokenFile, exact.service))
				}
			}
		}
	}
	return errs
}

// checkClientReach checks how client c reaches node n at u: it waits for the node to be
// healthy (a one-shot runs once, so one started before the node answers just fails), at
// its API port, with the scheme the node serves, and over HTTPS with the node's CA.
func checkClientReach(f *composeFile, c clientRun, u *url.URL, n *node) []error {
	var errs []error
	fail := func(err error) { errs = append(errs, fmt.Errorf("service %s: %w", c.service, err)) }
	s := f.Services[c.service]
	if s.DependsOn[n.service] != "service_healthy" {
		fail(fmt.Errorf("asks %s, which is not among its depends_on with condition service_healthy: it would run before the node answers, and fail", n.service))
	}
	port, _ := strconv.Atoi(u.Port())
	if u.Port() == "" {
		port = map[string]int{"http": 80, "https": 443}[u.Scheme]
	}
	if port != n.httpPort {
		fail(fmt.Errorf("--url %s: %s serves its API on container port %d", c.url, n.service, n.httpPort))
	}
	switch {
	case n.tlsFiles == nil && u.Scheme != "http":
		fail(fmt.Errorf("--url %s: %s serves plain HTTP", c.url, n.service))
	case n.tlsFiles == nil:
	case u.Scheme != "https":
		fail(fmt.Errorf("--url %s: %s serves HTTPS (cluster TLS)", c.url, n.service))
	case c.cacert == "":
		fail(fmt.Errorf("--url %s without --cacert: %s's certificate is signed by the cluster CA, which the image does not trust", c.url, n.service))
	default:
		want, _, ok1 := fileOn(f.Services[n.service], n.tlsFiles[0])
		got, _, ok2 := fileOn(s, c.cacert)
		if !ok1 || !ok2 || want != got {
			fail(fmt.Errorf("--cacert %s is not %s's --tls-ca %s (mount its volume)", c.cacert, n.service, n.tlsFiles[0]))
		}
	}
	return errs
}
