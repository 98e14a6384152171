package main

import (
	"flag"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/chronicle-ledger/chronicle/deploy"
	"github.com/chronicle-ledger/chronicle/node"
)

// chronicleBinary describes this binary's real command line to the deployment checks:
// the flag sets serve, health, certs, cluster status, token generate and token create
// parse with, and envName.
func chronicleBinary() deploy.Binary {
	return deploy.Binary{
		Flags: func(args []string) (*flag.FlagSet, []string, error) {
			switch {
			case args[0] == "serve":
				fs, _ := newServeFlags()
				return fs, args[1:], nil
			case args[0] == "health":
				fs, _, _, _ := newHealthFlags()
				return fs, args[1:], nil
			case args[0] == "certs" && len(args) > 1 && (args[1] == "ca" || args[1] == "node" || args[1] == "cluster"):
				fs, _ := newCertsFlags(args[1])
				return fs, args[2:], nil
			case args[0] == "cluster" && len(args) > 1 && args[1] == "status":
				fs, _, _, _ := newClusterStatusFlags()
				return fs, args[2:], nil
			case args[0] == "token" && len(args) > 1 && args[1] == "generate":
				fs, _ := newTokenGenerateFlags()
				return fs, args[2:], nil
			case args[0] == "token" && len(args) > 1 && args[1] == "create":
				fs, _ := newTokenCreateFlags()
				return fs, args[2:], nil
			}
			return nil, nil, fmt.Errorf("chronicle %s: not a command the deployments may run (serve, health, certs, cluster status, token generate, token create)", args[0])
		},
		EnvName: envName,
		Version: node.Version,
	}
}

func readDeployFile(t *testing.T, name string) string {
	t.Helper()
	b, err := fs.ReadFile(deploy.Files(), name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDeployFiles checks deploy/Dockerfile and every compose file with the binary's real
// flags.
func TestDeployFiles(t *testing.T) {
	bin := chronicleBinary()
	if err := deploy.CheckDockerfile([]byte(readDeployFile(t, "Dockerfile")), bin); err != nil {
		t.Errorf("deploy/Dockerfile:\n%v", err)
	}
	names, err := deploy.ComposeFiles()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"compose/edge.yml", "compose/cluster.yml", "compose/sql.yml"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("no deploy/%s among %q", want, names)
		}
	}
	for _, name := range names {
		if err := deploy.CheckCompose([]byte(readDeployFile(t, name)), bin); err != nil {
			t.Errorf("deploy/%s:\n%v", name, err)
		}
	}
}

// TestDeployPrometheusConfig: deploy/prometheus/prometheus.yml has one job per compose
// deployment, scraping exactly its nodes; broken variants of it (with the compose file
// changed to match, where the case needs it) are refused by the compose checks, for the
// reason given.
func TestDeployPrometheusConfig(t *testing.T) {
	jobs, err := deploy.PrometheusJobs()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"chronicle-edge": {"chronicle:4000"}, "chronicle-cluster": {"n1:4000", "n2:4000", "n3:4000"},
		"chronicle-sql": {"command-1:4002", "command-2:4002", "query:4001"}}
	if fmt.Sprint(jobs) != fmt.Sprint(want) {
		t.Errorf("scrape jobs %v, want %v", jobs, want)
	}
	conf := readDeployFile(t, "prometheus/prometheus.yml")
	type edit struct{ old, new string }
	cases := []struct {
		name, file, old, new, want string
		compose                    []edit // of the compose file, besides prometheus.yml's
	}{
		{"a node not scraped", "compose/cluster.yml", "[n1:4000, n2:4000, n3:4000]", "[n1:4000, n2:4000]", "no job scrapes service n3", nil},
		{"wrong port", "compose/sql.yml", "query:4001", "query:4002", "target query:4002: query serves its API on container port 4001", nil},
		{"HTTP to a TLS node", "compose/cluster.yml", "scheme: https", "scheme: http", "the node serves HTTPS (cluster TLS): set scheme: https", nil},
		{"no CA", "compose/cluster.yml", "ca_file: /token/ca.crt", "ca_file: /etc/ssl/ca.crt", "tls_config.ca_file /etc/ssl/ca.crt is not the node's --tls-ca /certs/ca.crt", nil},
		{"no token", "compose/edge.yml", "  - job_name: chronicle-edge\n    scheme: http\n    metrics_path: /metrics\n    authorization:\n      type: Bearer\n      credentials_file: /token/prometheus.token\n",
			"  - job_name: chronicle-edge\n    scheme: http\n    metrics_path: /metrics\n", "the node requires a token", nil},
		{"two deployments in a job", "compose/edge.yml", "[chronicle:4000]", "[chronicle:4000, n1:4000]", "keep one deployment per job", nil},
		{"another path", "compose/sql.yml", "  - job_name: chronicle-sql\n    scheme: http\n    metrics_path: /metrics", "  - job_name: chronicle-sql\n    scheme: http\n    metrics_path: /prom", "metrics_path /prom", nil},
		{"a token file nothing makes", "compose/sql.yml", "credentials_file: /token/prometheus.token\n    static_configs:\n      - targets: [command-1", "credentials_file: /token/other.token\n    static_configs:\n      - targets: [command-1",
			"authorization.credentials_file /token/other.token is made by no one-shot `chronicle token create --role reader --out FILE`", nil},

		// The shipped mistake: Prometheus handed the admin token, on the volume that holds it.
		{"edge: the admin token from the data volume", "compose/edge.yml", "credentials_file: /token/prometheus.token\n    static_configs:\n      - targets: [chronicle:4000]", "credentials_file: /token/admin.token\n    static_configs:\n      - targets: [chronicle:4000]",
			"authorization.credentials_file /token/admin.token is the nodes' admin token (--bootstrap-token-file /data/admin.token)", []edit{{`"metrics-token:/token:ro"`, `"chronicle-data:/token:ro"`}}},
		{"sql: the admin token from its volume", "compose/sql.yml", "credentials_file: /token/prometheus.token\n    static_configs:\n      - targets: [command-1", "credentials_file: /token/admin.token\n    static_configs:\n      - targets: [command-1",
			"authorization.credentials_file /token/admin.token is the nodes' admin token (--bootstrap-token-file /token/admin.token)", []edit{{`"metrics-token:/token:ro"`, `"chronicle-token:/token:ro"`}}},
		{"cluster: the admin token and the CA from the certs volume", "compose/cluster.yml", "credentials_file: /token/prometheus.token\n    static_configs:\n      - targets: [n1", "credentials_file: /token/admin.token\n    static_configs:\n      - targets: [n1",
			"service prometheus: mounts volume certs, which holds", []edit{{`"metrics-token:/token:ro"`, `"certs:/token:ro"`}}},
		{"cluster: the CA copy not made", "compose/cluster.yml", "ca_file: /token/ca.crt", "ca_file: /token/ca.pem",
			"tls_config.ca_file /token/ca.pem is not the node's --tls-ca /certs/ca.crt nor a copy of it", nil},
		{"cluster: the CA copy not waited for", "compose/cluster.yml", "ca_file: /token/ca.crt", "ca_file: /token/ca.crt",
			"tls_config.ca_file /token/ca.crt is copied by ca-copy: depend on it with condition service_completed_successfully",
			[]edit{{", --out=/data/prometheus.token, --cacert-out=/data/ca.crt]", ", --out=/data/prometheus.token]"},
				{"  prometheus:\n    image: prom/prometheus", "  ca-copy:\n    image: chronicle:0.2.0\n    command: [token, create, --url=https://n1:4000, --cacert=/certs/ca.crt, --token-file=/certs/admin.token, --name=x, --role=reader, --out=/data/x.token, --cacert-out=/data/ca.crt]\n    depends_on: {n1: {condition: service_healthy}}\n    volumes: [\"certs:/certs:ro\", \"metrics-token:/data\"]\n    networks: [chronicle]\n    healthcheck: {disable: true}\n  prometheus:\n    image: prom/prometheus"}}},
	}
	bin := chronicleBinary()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(conf, c.old) {
				t.Fatalf("prometheus.yml has no %q to break", c.old)
			}
			repo := fstest.MapFS{}
			err := fs.WalkDir(deploy.Files(), ".", func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				b, err := fs.ReadFile(deploy.Files(), p)
				repo[p] = &fstest.MapFile{Data: b}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			repo["prometheus/prometheus.yml"] = &fstest.MapFile{Data: []byte(strings.Replace(conf, c.old, c.new, 1))}
			composeText := readDeployFile(t, c.file)
			for _, e := range c.compose {
				if !strings.Contains(composeText, e.old) {
					t.Fatalf("deploy/%s has no %q to break", c.file, e.old)
				}
				composeText = strings.ReplaceAll(composeText, e.old, e.new)
			}
			err = deploy.CheckComposeFS([]byte(composeText), bin, repo)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("deploy/%s with the broken prometheus.yml: %v\nwant an error saying %q", c.file, err, c.want)
			}
		})
	}
}

// TestDeployChecksCatchBreakage feeds broken variants of the real files through the same
// checks: each must be refused, for the reason given.
func TestDeployChecksCatchBreakage(t *testing.T) {
	type edit struct{ old, new string }
	cases := []struct {
		name  string
		file  string
		edits []edit
		want  string
	}{
		// Command lines, with the real flag sets.
		{"misspelled serve flag", "compose/edge.yml", []edit{{"--raft-addr=127.0.0.1:4001", "--raft-adr=127.0.0.1:4001"}}, "flag provided but not defined: -raft-adr"},
		{"bad flag value", "compose/cluster.yml", []edit{{`CHRONICLE_BOOTSTRAP_EXPECT: "3"`, `CHRONICLE_BOOTSTRAP_EXPECT: three`}}, `CHRONICLE_BOOTSTRAP_EXPECT="three"`},
		{"unknown subcommand", "compose/edge.yml", []edit{{"      - serve\n", "      - server\n"}}, "chronicle server: not a command"},
		{"stray argument", "compose/edge.yml", []edit{{"      - --data-dir=/data\n", "      - --data-dir\n      - /data\n      - extra\n"}}, "unexpected arguments"},
		{"env naming no flag", "compose/edge.yml", []edit{{"CHRONICLE_LOG_LEVEL: info", "CHRONICLE_LOGLEVEL: info"}}, "CHRONICLE_LOGLEVEL names no flag of chronicle serve"},
		{"env and flag both", "compose/edge.yml", []edit{{"CHRONICLE_LOG_LEVEL: info", "CHRONICLE_NODE_ID: n9"}}, "CHRONICLE_NODE_ID and --node-id both set"},
		{"unknown key", "compose/edge.yml", []edit{{"    command:\n", "    x-command:\n"}}, "field x-command not found"},
		{"no command", "compose/cluster.yml", []edit{{"    command: [cluster, status, --url, https://n1:4000, --cacert, /certs/ca.crt, --token-file, /certs/admin.token]\n", ""}}, "no command"},
		{"raft on every interface", "compose/edge.yml", []edit{{"--raft-addr=127.0.0.1:4001", "--raft-addr=0.0.0.0:4001"}}, "transport refuses 0.0.0.0"},
		{"no advertise url", "compose/edge.yml", []edit{{"      - --advertise-url=http://127.0.0.1:4000\n", ""}}, "set --advertise-url"},
		{"api on loopback", "compose/edge.yml", []edit{{"--http-addr=0.0.0.0:4000", "--http-addr=127.0.0.1:4000"}}, "unreachable from outside"},
		{"data dir off the volume", "compose/edge.yml", []edit{{"--data-dir=/data", "--data-dir=/var/lib/chronicle"}}, "is on no named volume"},
		{"cluster status flag", "compose/cluster.yml", []edit{{"[cluster, status, --url, https://n1:4000,", "[cluster, status, --node, https://n1:4000,"}}, "flag provided but not defined: -node"},

		// Health checks.
		{"curl health check", "compose/edge.yml", []edit{{`["CMD", "chronicle", "health", "--url", "http://127.0.0.1:4000", "--timeout", "3s"]`, `["CMD", "curl", "-f", "http://127.0.0.1:4000/ready"]`}}, "want [\"CMD\", \"chronicle\", \"health\""},
		{"shell health check", "compose/edge.yml", []edit{{`["CMD", "chronicle", "health", "--url", "http://127.0.0.1:4000", "--timeout", "3s"]`, `chronicle health`}}, "CMD-SHELL needs a shell"},
		{"health flag", "compose/edge.yml", []edit{{`"--timeout", "3s"]`, `"--wait", "3s"]`}}, "flag provided but not defined: -wait"},
		{"health on the wrong port", "compose/edge.yml", []edit{{`"--url", "http://127.0.0.1:4000"`, `"--url", "http://127.0.0.1:4001"`}}, "--http-addr port is 4000"},
		{"node without health check", "compose/edge.yml", []edit{{"    healthcheck:\n", "    x-healthcheck:\n"}}, "field x-healthcheck not found"},
		{"disabled health check", "compose/edge.yml", []edit{{"      retries: 3\n", "      retries: 3\n      disable: true\n"}}, "a node needs a health check"},

		// References between services, volumes and ports.
		{"depends on a missing service", "compose/cluster.yml", []edit{{"n3: {condition: service_healthy}", "n4: {condition: service_healthy}"}}, "depends_on n4: no such service"},
		{"unknown condition", "compose/cluster.yml", []edit{{"n3: {condition: service_healthy}", "n3: {condition: healthy}"}}, `condition "healthy"`},
		{"undeclared volume", "compose/cluster.yml", []edit{{"volumes: [n3-data:/data, certs", "volumes: [n3data:/data, certs"}}, "volume n3data is not declared"},
		{"shared data volume", "compose/cluster.yml", []edit{{"volumes: [n3-data:/data, certs", "volumes: [n2-data:/data, certs"}}, "same volume n2-data"},
		{"same host port", "compose/cluster.yml", []edit{{`"127.0.0.1:4103:4000"`, `"4102:4000"`}}, "both publish host port 4102/tcp"},
		{"port the node does not listen on", "compose/edge.yml", []edit{{`"127.0.0.1:4000:4000"`, `"127.0.0.1:4000:8080"`}}, "container port 8080"},
		{"misspelled key", "compose/cluster.yml", []edit{{"    depends_on:\n", "    depend_on:\n"}}, "field depend_on not found"},
		{"unknown top-level key", "compose/edge.yml", []edit{{"\nvolumes:\n", "\nvolume:\n"}}, `top-level key "volume"`},
		{"not yaml", "compose/edge.yml", []edit{{"services:\n", "services: [\n"}}, "parse"},

		// The cluster's addresses.
		{"duplicate node id", "compose/cluster.yml", []edit{{"--node-id=n3,", "--node-id=n2,"}}, "both node n2"},
		{"raft address of another node", "compose/cluster.yml", []edit{{"--raft-addr=n3:4001", "--raft-addr=n2:4001"}}, `--raft-addr host "n2" is not this service's`},
		{"raft on loopback in a cluster", "compose/cluster.yml", []edit{{"--raft-addr=n3:4001", "--raft-addr=127.0.0.1:4001"}}, "reachable from the other nodes"},
		{"join a node that is not there", "compose/cluster.yml", []edit{{"CHRONICLE_JOIN: https://n1:4000,https://n2:4000,https://n3:4000", "CHRONICLE_JOIN: https://n1:4000,https://n2:4000,https://n4:4000"}}, "no node in this file answers to n4"},
		{"join the raft port", "compose/cluster.yml", []edit{{"https://n1:4000,https://n2:4000,https://n3:4000", "https://n1:4001,https://n2:4000,https://n3:4000"}}, "n1's API listens on port 4000"},

		// Cluster TLS.
		{"tls: some flags only", "compose/cluster.yml", []edit{{", --tls-cert=/certs/n3.crt, --tls-key=/certs/n3.key]", "]"}}, "--tls-ca, --tls-cert and --tls-key go together"},
		{"tls: cluster without it", "compose/cluster.yml", []edit{{"    CHRONICLE_TLS_CA: /certs/ca.crt\n", ""}, {", --tls-cert=/certs/n3.crt, --tls-key=/certs/n3.key]", "]"}}, "a cluster member needs --tls-ca, --tls-cert and --tls-key"},
		{"tls: join over http", "compose/cluster.yml", []edit{{"CHRONICLE_JOIN: https://n1:4000,", "CHRONICLE_JOIN: http://n1:4000,"}}, "--join http://n1:4000: with cluster TLS the nodes serve https"},
		{"tls: advertise http", "compose/cluster.yml", []edit{{"--advertise-url=https://n3:4000", "--advertise-url=http://n3:4000"}}, "--advertise-url http://n3:4000: the node serves https"},
		{"tls: health over http", "compose/cluster.yml", []edit{{`"https://127.0.0.1:4000", "--cacert"`, `"http://127.0.0.1:4000", "--cacert"`}}, "the node serves HTTPS"},
		{"tls: health without the CA", "compose/cluster.yml", []edit{{`"--cacert", "/certs/ca.crt", `, ""}}, "without --cacert"},
		{"tls: certificates not waited for", "compose/cluster.yml", []edit{{"  depends_on:\n    certs: {condition: service_completed_successfully}\n    token:", "  depends_on:\n    token:"}}, "--tls-cert /certs/n3.crt is made by certs: depend on it with condition service_completed_successfully"},
		{"tls: certificate without the node's name", "compose/cluster.yml", []edit{{"--node=n3=n3,172.28.5.13", "--node=n3=172.28.5.13"}}, "does not list host n3"},
		{"tls: no certificate for the node", "compose/cluster.yml", []edit{{"--node=n3=n3,", "--node=n4=n3,"}}, "makes no certificate n3"},
		{"tls: files off the volume", "compose/cluster.yml", []edit{{"volumes: [n3-data:/data, certs:/certs:ro]", "volumes: [n3-data:/data]"}}, "--tls-cert /certs/n3.crt is on no volume"},
		{"tls: certificates written read-only", "compose/cluster.yml", []edit{{"volumes: [certs:/data]", `volumes: ["certs:/data:ro"]`}}, "mounted read-write"},
		{"no fixed address", "compose/cluster.yml", []edit{{"        ipv4_address: 172.28.5.13\n", "        aliases: [node3]\n"}}, "needs a fixed ipv4_address"},

		// Authentication (protected mode) and the admin token.
		{"auth: exposed node without a token file", "compose/edge.yml", []edit{{"      - --bootstrap-token-file=/data/admin.token\n", ""}}, "--http-addr 0.0.0.0:4000 can be reached from other machines, so the node refuses to start without authentication"},
		{"auth: relative token file", "compose/edge.yml", []edit{{"--bootstrap-token-file=/data/admin.token", "--bootstrap-token-file=admin.token"}}, `--bootstrap-token-file "admin.token": want an absolute path`},
		{"auth: token file off the volume", "compose/edge.yml", []edit{{"--bootstrap-token-file=/data/admin.token", "--bootstrap-token-file=/tmp/admin.token"}}, "--bootstrap-token-file /tmp/admin.token is on no volume this service mounts"},
		{"auth: cluster members without a token file", "compose/cluster.yml", []edit{{"    CHRONICLE_BOOTSTRAP_TOKEN_FILE: /certs/admin.token\n", ""}}, "service n2: --http-addr 0.0.0.0:4000, --raft-addr n2:4001 can be reached from other machines"},
		{"auth: token not waited for", "compose/cluster.yml", []edit{{"    token: {condition: service_completed_successfully}\n", ""}}, "--bootstrap-token-file /certs/admin.token is made by token: depend on it with condition service_completed_successfully"},
		{"auth: a token file per member", "compose/cluster.yml", []edit{{"CHRONICLE_BOOTSTRAP_TOKEN_FILE: /certs/admin.token", "CHRONICLE_BOOTSTRAP_TOKEN_FILE: /data/admin.token"}}, "share one token table"},
		{"auth: token file the generator does not write", "compose/cluster.yml", []edit{{"CHRONICLE_BOOTSTRAP_TOKEN_FILE: /certs/admin.token", "CHRONICLE_BOOTSTRAP_TOKEN_FILE: /certs/admin.secret"}}, "--bootstrap-token-file /certs/admin.secret: token writes /data/admin.token on that volume, not this file"},
		{"auth: token generated read-only", "compose/sql.yml", []edit{{"volumes: [chronicle-token:/data]", `volumes: ["chronicle-token:/data:ro"]`}}, "chronicle token generate --out /data/admin.token: want a file on a named volume mounted read-write"},
		{"auth: token generate flag", "compose/sql.yml", []edit{{"[token, generate, --out=/data/admin.token]", "[token, generate, --file=/data/admin.token]"}}, "flag provided but not defined: -file"},
		{"auth: status without a token", "compose/cluster.yml", []edit{{", --token-file, /certs/admin.token]", "]"}}, "service status: asks n1, which requires an API token (--bootstrap-token-file /certs/admin.token), without --token-file"},
		{"auth: status with the secret inline", "compose/cluster.yml", []edit{{"--token-file, /certs/admin.token]", "--token, chr_0123456789abcdef0123456789abcdef]"}}, "writes the secret into the compose file"},
		{"auth: status with another file", "compose/cluster.yml", []edit{{"--token-file, /certs/admin.token]", "--token-file, /certs/reader.token]"}}, "--token-file /certs/reader.token is not the admin token n1 uses"},
		{"auth: sql processes without a token file", "compose/sql.yml", []edit{{"    CHRONICLE_BOOTSTRAP_TOKEN_FILE: /token/admin.token\n", ""}}, "service query: --http-addr 0.0.0.0:4001 can be reached from other machines, so the node refuses to start without authentication"},
		{"auth: sql token not waited for", "compose/sql.yml", []edit{{"      token: {condition: service_completed_successfully}\n      postgres:", "      postgres:"}}, "service query: --bootstrap-token-file /token/admin.token is made by token: depend on it"},

		// Monitoring: Prometheus and Grafana.
		{"monitoring: unpinned Prometheus", "compose/edge.yml", []edit{{"image: prom/prometheus:v3.5.0", "image: prom/prometheus"}}, "image prom/prometheus: pin a version tag"},
		{"monitoring: Grafana latest", "compose/cluster.yml", []edit{{"image: grafana/grafana:11.6.0", "image: grafana/grafana:latest"}}, `tag "latest" moves`},
		{"monitoring: config not in the repository", "compose/sql.yml", []edit{{"../prometheus/prometheus.yml:", "../prometheus/prom.yml:"}}, "deploy/prometheus/prom.yml is not in the repository"},
		{"monitoring: dashboards mounted writable", "compose/edge.yml", []edit{{"../grafana/dashboards:/etc/grafana/dashboards:ro", "../grafana/dashboards:/etc/grafana/dashboards"}}, "mount the repository's files read-only"},
		{"monitoring: token volume writable", "compose/sql.yml", []edit{{`"metrics-token:/token:ro"`, `"metrics-token:/token"`}}, "credentials_file /token/prometheus.token: mount the volume read-only"},

		// Monitoring: Prometheus gets a reader token of its own, and no volume with secrets.
		{"monitoring: a node's data volume instead of the token's", "compose/cluster.yml", []edit{{`"metrics-token:/token:ro"`, `"n1-data:/token:ro"`}}, "service prometheus: mounts volume n1-data, which is the data directory of n1 (--data-dir /data)"},
		{"monitoring: the edge node's data volume too", "compose/edge.yml", []edit{{`"metrics-token:/token:ro"]`, `"metrics-token:/token:ro", "chronicle-data:/ledger:ro"]`}}, "service prometheus: mounts volume chronicle-data, which is the data directory of chronicle"},
		{"monitoring: the certs volume too", "compose/cluster.yml", []edit{{`"metrics-token:/token:ro"]`, `"metrics-token:/token:ro", "certs:/certs:ro"]`}}, "service prometheus: mounts volume certs, which holds n1's TLS private key (--tls-key /certs/n1.key)"},
		{"monitoring: the admin token volume too", "compose/sql.yml", []edit{{`"metrics-token:/token:ro"]`, `"metrics-token:/token:ro", "chronicle-token:/admin:ro"]`}}, "service prometheus: mounts volume chronicle-token, which holds the admin token command-1 starts with"},
		{"monitoring: an admin token for Prometheus", "compose/edge.yml", []edit{{"--role=reader", "--role=admin"}}, "authorization.credentials_file /token/prometheus.token is a token of role admin (made by metrics-token): /metrics needs only reader"},
		{"monitoring: a writer token for Prometheus", "compose/sql.yml", []edit{{"--role=reader", "--role=writer"}}, "mounts volume metrics-token, which holds the writer token metrics-token writes"},
		{"monitoring: the token's one-shot not waited for", "compose/edge.yml", []edit{{"depends_on: {metrics-token: {condition: service_completed_successfully}}", "depends_on: {chronicle: {condition: service_healthy}}"}}, "authorization.credentials_file /token/prometheus.token is made by metrics-token: depend on it with condition service_completed_successfully"},
		{"monitoring: the token's one-shot only started", "compose/sql.yml", []edit{{"depends_on: {metrics-token: {condition: service_completed_successfully}}", "depends_on: {metrics-token: {condition: service_started}}"}}, "is made by metrics-token: depend on it with condition service_completed_successfully"},
		{"monitoring: a token generate one-shot for Prometheus", "compose/sql.yml", []edit{{"[token, create, --url=http://command-1:4002, --token-file=/token/admin.token, --name=prometheus, --role=reader, --out=/data/prometheus.token]", "[token, generate, --out=/data/prometheus.token]"}}, "is written by metrics-token (`chronicle token generate`), an admin token"},

		// The one-shot that makes Prometheus' token.
		{"metrics token: secret printed, not written", "compose/edge.yml", []edit{{", --out=/data/prometheus.token]", "]"}}, "service metrics-token: chronicle token create without --out: a one-shot would print the secret into its log"},
		{"metrics token: written read-only", "compose/cluster.yml", []edit{{`"metrics-token:/data"`, `"metrics-token:/data:ro"`}}, `chronicle token create --out "/data/prometheus.token": want an absolute path on a named volume mounted read-write`},
		{"metrics token: CA copy without the CA", "compose/cluster.yml", []edit{{"--cacert=/certs/ca.crt, --token-file=/certs/admin.token, --name=prometheus", "--token-file=/certs/admin.token, --name=prometheus"}}, "--cacert-out copies --cacert: give both"},
		{"metrics token: unknown role", "compose/edge.yml", []edit{{"--role=reader", "--role=metrics"}}, `chronicle token create --role "metrics": want admin, writer or reader`},
		{"metrics token: misspelled flag", "compose/edge.yml", []edit{{"--out=/data/prometheus.token", "--output=/data/prometheus.token"}}, "flag provided but not defined: -output"},
		{"metrics token: before the node is healthy", "compose/edge.yml", []edit{{"      chronicle: {condition: service_healthy}\n    volumes: [\"chronicle-data:/admin:ro\"", "      chronicle: {condition: service_started}\n    volumes: [\"chronicle-data:/admin:ro\""}}, "service metrics-token: asks chronicle, which is not among its depends_on with condition service_healthy"},
		{"metrics token: a query process", "compose/sql.yml", []edit{{"--url=http://command-1:4002, --token-file", "--url=http://query:4001, --token-file"}}, "service metrics-token: asks query, which is not among its depends_on"},
		{"metrics token: the wrong port", "compose/sql.yml", []edit{{"--url=http://command-1:4002, --token-file", "--url=http://command-1:4001, --token-file"}}, "--url http://command-1:4001: command-1 serves its API on container port 4002"},
		{"metrics token: HTTP to a TLS node", "compose/cluster.yml", []edit{{"--url=https://n1:4000, --cacert", "--url=http://n1:4000, --cacert"}}, "--url http://n1:4000: n1 serves HTTPS (cluster TLS)"},
		{"metrics token: no such node", "compose/cluster.yml", []edit{{"--url=https://n1:4000, --cacert", "--url=https://n4:4000, --cacert"}}, "--url https://n4:4000: no chronicle serve of this file answers to n4"},
		{"metrics token: without the admin token", "compose/edge.yml", []edit{{"--token-file=/admin/admin.token, ", ""}}, "service metrics-token: asks chronicle, which requires an API token (--bootstrap-token-file /data/admin.token), without --token-file"},
		{"metrics token: the admin token not mounted", "compose/sql.yml", []edit{{`volumes: ["chronicle-token:/token:ro", "metrics-token:/data"]`, `volumes: ["metrics-token:/data"]`}}, "--token-file /token/admin.token is on no volume this service mounts"},
		{"metrics token: another token than the admin one", "compose/cluster.yml", []edit{{"--token-file=/certs/admin.token, --name=prometheus", "--token-file=/certs/reader.token, --name=prometheus"}}, "--token-file /certs/reader.token is not the admin token n1 uses"},
		{"monitoring: no provisioning", "compose/edge.yml", []edit{{"../grafana/provisioning:/etc/grafana/provisioning:ro", "../grafana/provisioning:/etc/grafana/prov:ro"}}, "mount deploy/grafana/provisioning at /etc/grafana/provisioning"},
		{"monitoring: Grafana before Prometheus", "compose/edge.yml", []edit{{"      prometheus: {condition: service_healthy}\n", ""}}, "Grafana's datasource is prometheus; start it first"},
		{"monitoring: Prometheus on another port", "compose/cluster.yml", []edit{{"--web.listen-address=0.0.0.0:9090", "--web.listen-address=0.0.0.0:9091"}}, "Prometheus listens on 9091, not 9090"},

		// The SQL topology.
		{"sql: unknown store", "compose/sql.yml", []edit{{"--store=sql", "--store=sq"}}, `--store "sq": want raft or sql`},
		{"sql: unknown role", "compose/sql.yml", []edit{{"--role=query", "--role=querry"}}, `--role "querry": want all, command or query`},
		{"sql: role without sql", "compose/edge.yml", []edit{{"      - --node-id=n1\n", "      - --node-id=n1\n      - --role=query\n"}}, "--role query needs --store sql"},
		{"sql: no event store", "compose/sql.yml", []edit{{"      - --event-store=postgres://root@cockroach:26257/chronicle?sslmode=disable&application_name=chronicle-command-2\n", ""}}, "--store sql without --event-store"},
		{"sql: event store not postgres", "compose/sql.yml", []edit{{"--event-store=postgres://root@cockroach:26257/chronicle?sslmode=disable&application_name=chronicle-query", "--event-store=cockroach:26257"}}, "want postgres://user@host:port/database"},
		{"sql: raft flag", "compose/sql.yml", []edit{{"      - --http-addr=0.0.0.0:4001\n", "      - --http-addr=0.0.0.0:4001\n      - --raft-addr=query:4000\n"}}, "--raft-addr with --store sql does nothing"},
		{"sql: read model on a command process", "compose/sql.yml", []edit{{"application_name=chronicle-command-1\n", "application_name=chronicle-command-1\n      - --read-model=postgres://postgres@postgres:5432/chronicle_read\n"}}, "with --role command does nothing"},
		{"sql: misspelled database host", "compose/sql.yml", []edit{{"root@cockroach:26257/chronicle?sslmode=disable&application_name=chronicle-command-2", "root@cockroch:26257/chronicle?sslmode=disable&application_name=chronicle-command-2"}}, "no service in this file answers to cockroch"},
		{"sql: event store on loopback", "compose/sql.yml", []edit{{"root@cockroach:26257/chronicle?sslmode=disable&application_name=chronicle-query", "root@127.0.0.1:26257/chronicle?sslmode=disable&application_name=chronicle-query"}}, "inside a container is the container itself"},
		{"sql: two event stores", "compose/sql.yml", []edit{{"cockroach:26257/chronicle?sslmode=disable&application_name=chronicle-command-2", "cockroach:26257/chronicle2?sslmode=disable&application_name=chronicle-command-2"}}, "share one event store"},
		{"sql: read model not waited for", "compose/sql.yml", []edit{{"      postgres: {condition: service_healthy}\n", ""}}, "postgres is not among its depends_on"},
		{"sql: init has no health check", "compose/sql.yml", []edit{{"cockroach-init: {condition: service_completed_successfully}", "cockroach-init: {condition: service_healthy}"}}, "service_healthy, but cockroach-init has no health check"},
		{"sql: no reads", "compose/sql.yml", []edit{{"--role=query", "--role=command"}}, "without a process that serves reads"},
		{"sql: bad nats url", "compose/sql.yml", []edit{{"--nats-url=nats://nats:4222", "--nats-url=http://nats:4222"}}, "want nats://host:port"},
		{"sql: embedded nats without a volume", "compose/sql.yml", []edit{{"      - --nats-url=nats://nats:4222\n      - --http-addr=0.0.0.0:4002\n    ports: [\"127.0.0.1:4002:4002\"]", "      - --http-addr=0.0.0.0:4002\n    ports: [\"127.0.0.1:4002:4002\"]"}}, `--data-dir "./data": want an absolute path on a volume`},
		{"sql: health on another port", "compose/sql.yml", []edit{{"      - --http-addr=0.0.0.0:4002\n    ports: [\"127.0.0.1:4003:4002\"]", "      - --http-addr=0.0.0.0:4003\n    ports: [\"127.0.0.1:4003:4002\"]"}}, "--http-addr port is 4003"},
		{"sql: same host port", "compose/sql.yml", []edit{{`"127.0.0.1:4003:4002"`, `"127.0.0.1:4002:4002"`}}, "both publish host port 4002/tcp"},

		// The Dockerfile.
		{"root user", "Dockerfile", []edit{{"USER 65532:65532", "USER root"}}, "is root"},
		{"no user", "Dockerfile", []edit{{"USER 65532:65532\n", ""}}, "no USER"},
		{"cgo", "Dockerfile", []edit{{"CGO_ENABLED=0 ", ""}}, "without CGO_ENABLED=0"},
		{"not stripped", "Dockerfile", []edit{{`"-s -w -X`, `"-X`}}, "without -s -w"},
		{"version not stamped", "Dockerfile", []edit{{"-X github.com/chronicle-ledger/chronicle/node.Version=$VERSION", ""}}, "node.Version=$VERSION"},
		{"version default drifts", "Dockerfile", []edit{{"ARG VERSION=" + node.Version + "\nARG TARGETOS", "ARG VERSION=0.0.1\nARG TARGETOS"}}, "no ARG VERSION=" + node.Version},
		{"no volume", "Dockerfile", []edit{{"VOLUME /data\n", ""}}, "on no VOLUME"},
		{"no expose", "Dockerfile", []edit{{"EXPOSE 4000 4001", "EXPOSE 4001"}}, "API listens on 4000"},
		{"curl healthcheck", "Dockerfile", []edit{{`CMD ["chronicle", "health", "--url"`, `CMD ["curl", "-f", "--url"`}}, "HEALTHCHECK"},
		{"shell form CMD", "Dockerfile", []edit{{`CMD ["serve", "--data-dir", "/data", `, `CMD serve --data-dir /data `}}, "want the exec form"},
		{"CMD flag", "Dockerfile", []edit{{`"--advertise-url"`, `"--advertise"`}}, "flag provided but not defined: -advertise"},
		{"one stage", "Dockerfile", []edit{{"FROM scratch\n", ""}}, "final stage FROM"},
		{"entrypoint", "Dockerfile", []edit{{`ENTRYPOINT ["chronicle"]`, `ENTRYPOINT ["/usr/local/bin/chronicle"]`}}, "ENTRYPOINT"},
		{"CMD without a token file", "Dockerfile", []edit{{`, "--bootstrap-token-file", "/data/admin.token"]`, "]"}}, "--http-addr 0.0.0.0:4000 can be reached from other machines, so the node refuses to start without authentication"},
		{"CMD token file off the volume", "Dockerfile", []edit{{`"--bootstrap-token-file", "/data/admin.token"`, `"--bootstrap-token-file", "/etc/admin.token"`}}, "CMD --bootstrap-token-file /etc/admin.token is on no VOLUME"},
	}
	bin := chronicleBinary()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text := readDeployFile(t, c.file)
			for _, e := range c.edits {
				if !strings.Contains(text, e.old) {
					t.Fatalf("deploy/%s has no %q to break", c.file, e.old)
				}
				text = strings.ReplaceAll(text, e.old, e.new)
			}
			var err error
			if c.file == "Dockerfile" {
				err = deploy.CheckDockerfile([]byte(text), bin)
			} else {
				err = deploy.CheckCompose([]byte(text), bin)
			}
			if err == nil {
				t.Fatalf("broken deploy/%s passed the checks", c.file)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error does not say %q:\n%v", c.want, err)
			}
			t.Logf("refused: %v", err)
		})
	}
}
