package deploy_test

import (
	"errors"
	"flag"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle/deploy"
)

// standIn is a small binary for the syntax tests below: serve, health, token generate and
// cluster status with the flags the snippets use. The real files are checked with the
// real binary's flag sets by cmd/chronicle's TestDeployFiles and
// TestDeployChecksCatchBreakage.
func standIn() deploy.Binary { return standInBinary(true) }

// standInBinary is standIn; without auth, its serve has no --bootstrap-token-file and no
// --insecure (a binary from before protected mode).
func standInBinary(auth bool) deploy.Binary {
	return deploy.Binary{
		Flags: func(args []string) (*flag.FlagSet, []string, error) {
			fs := flag.NewFlagSet("chronicle "+args[0], flag.ContinueOnError)
			switch args[0] {
			case "token", "cluster":
				if len(args) < 2 || (args[0] == "token") != (args[1] == "generate") || (args[0] == "cluster") != (args[1] == "status") {
					return nil, nil, errors.New("no such command " + strings.Join(args, " "))
				}
				if args[0] == "token" {
					fs.String("out", "", "")
				} else {
					fs.String("url", "http://127.0.0.1:4000", "")
					fs.String("token", "", "")
					fs.String("token-file", "", "")
				}
				return fs, args[2:], nil
			case "serve":
				if auth {
					fs.String("bootstrap-token-file", "", "")
					fs.Bool("insecure", false, "")
				}
				fs.String("nats-listen", "", "")
				fs.String("data-dir", "./data", "")
				fs.String("http-addr", "127.0.0.1:4000", "")
				fs.String("raft-addr", "127.0.0.1:4001", "")
				fs.String("advertise-url", "", "")
				fs.String("node-id", "n1", "")
				fs.String("join", "", "")
				fs.Int("bootstrap-expect", 0, "")
				fs.String("log-level", "info", "")
				fs.String("store", "raft", "")
				fs.String("event-store", "", "")
				fs.String("role", "all", "")
				fs.String("read-model", "pebble", "")
				fs.String("nats-url", "", "")
			case "health":
				fs.String("url", "http://127.0.0.1:4000", "")
				fs.Duration("timeout", 2*time.Second, "")
			default:
				return nil, nil, errors.New("no such command " + args[0])
			}
			return fs, args[1:], nil
		},
		EnvName: func(name string) string {
			return "CHRONICLE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		},
		Version: "1.2.3",
	}
}

// node is a valid one-node service; the cases add to it or replace its lines.
const node = `
volumes:
  a-data:
  b-data:
services:
  a:
    image: chronicle:test
    command: [serve, --data-dir=/data, --http-addr=0.0.0.0:4000, --advertise-url=http://a:4000, --bootstrap-token-file=/data/admin.token]
    volumes: [a-data:/data]
    healthcheck:
      test: [CMD, chronicle, health]
PORTS
ENV
`

// sqlCompose is a valid process of the SQL topology (role all) with its database.
func sqlCompose(extra string) string {
	return `
volumes:
  q-data:
services:
  db:
    image: postgres
    healthcheck:
      test: [CMD, pg_isready]
  q:
    image: chronicle:test
    command: [serve, --store=sql, --event-store=postgres://db/es, --read-model=postgres://db/read, --nats-url=nats://nats.example.com:4222, --http-addr=0.0.0.0:4001, --insecure]
    depends_on: [db]
    healthcheck:
      test: [CMD, chronicle, health, --url, http://127.0.0.1:4001]
` + extra
}

// tokenCompose is the node with its token file on the read-only volume keys, written
// (when made) by a one-shot tok that the node waits for (when waits).
func tokenCompose(made, waits bool) string {
	s := strings.Replace(compose("", ""), "--bootstrap-token-file=/data/admin.token", "--bootstrap-token-file=/keys/admin.token", 1)
	s = strings.Replace(s, "volumes: [a-data:/data]", "volumes: [a-data:/data, \"keys:/keys:ro\"]", 1)
	s = strings.Replace(s, "volumes:\n", "volumes:\n  keys:\n", 1)
	if waits {
		s += "    depends_on: {tok: {condition: service_completed_successfully}}\n"
	}
	if made {
		s += "  tok:\n    image: chronicle:test\n    command: [token, generate, --out=/out/admin.token]\n    volumes: [keys:/out]\n"
	}
	return s
}

func compose(ports, env string) string {
	return strings.NewReplacer("PORTS\n", ports, "ENV\n", env).Replace(node)
}

func TestComposeSyntax(t *testing.T) {
	cases := []struct {
		name, yaml, want string // want "": valid
	}{
		{"minimal", compose("", ""), ""},
		{"short ports", compose("    ports: [\"4000\", \"4000:4000\", \"[::1]:4001:4000/tcp\", \"4002-4003:4000-4001\"]\n", ""), ""},
		{"long port", compose("    ports:\n      - {target: 4000, published: \"4000\", host_ip: 127.0.0.1}\n", ""), ""},
		{"long port unknown key", compose("    ports:\n      - {target: 4000, publish: 4000}\n", ""), "field publish not found"},
		{"bad port", compose("    ports: [\"4000:70000\"]\n", ""), "not a port number"},
		{"range lengths", compose("    ports: [\"4000-4002:4000-4001\"]\n", ""), "ranges differ"},
		{"env list form", compose("", "    environment: [CHRONICLE_LOG_LEVEL=debug, CHRONICLE_NODE_ID, OTHER=1]\n"), ""},
		{"env list form unknown", compose("", "    environment: [CHRONICLE_LOGLEVEL=debug]\n"), "CHRONICLE_LOGLEVEL names no flag"},
		{"env bad value", compose("", "    environment: {CHRONICLE_BOOTSTRAP_EXPECT: x}\n"), "CHRONICLE_BOOTSTRAP_EXPECT=\"x\""},
		{"env for health", compose("", "    environment: {CHRONICLE_URL: http://127.0.0.1:4000}\n"), "CHRONICLE_URL names no flag of chronicle serve"},
		{"string command", strings.Replace(compose("", ""), "[serve, --data-dir=/data, --http-addr=0.0.0.0:4000, --advertise-url=http://a:4000, --bootstrap-token-file=/data/admin.token]", "serve --data-dir=/data --http-addr=0.0.0.0:4000 --advertise-url=http://a:4000 --bootstrap-token-file=/data/admin.token", 1), ""},
		{"quoted string command", strings.Replace(compose("", ""), "[serve, --data-dir=/data, --http-addr=0.0.0.0:4000, --advertise-url=http://a:4000, --bootstrap-token-file=/data/admin.token]", `serve --data-dir "/data"`, 1), "write it as a list"},
		{"health on another host", strings.Replace(compose("", ""), "[CMD, chronicle, health]", "[CMD, chronicle, health, --url, http://a:4000]", 1), "in its own container"},
		{"depends_on list", compose("    depends_on: [b]\n", ""), "depends_on b: no such service"},
		{"depends_on itself", compose("    depends_on: [a]\n", ""), "itself"},
		{"healthy without health check", compose("", "") + "  b:\n    image: other\n    depends_on: {a: {condition: service_healthy}}\n  c:\n    image: other\n    depends_on: {b: {condition: service_healthy}}\n", "service_healthy, but b has no health check"},
		{"long volume undeclared", strings.Replace(compose("", ""), "volumes: [a-data:/data]", "volumes: [{type: volume, source: z, target: /data}]", 1), "volume z is not declared"},
		{"bind mount", strings.Replace(compose("", ""), "volumes: [a-data:/data]", "volumes: [./state:/data]", 1), ""},
		{"anonymous volume", strings.Replace(compose("", ""), "volumes: [a-data:/data]", "volumes: [/data]", 1), "is on no named volume"},
		{"undeclared network", compose("    networks: [back]\n", ""), "network back is not declared"},
		{"port clash across interfaces", compose("    ports: [\"127.0.0.1:4000:4000\"]\n", "") + "  b:\n    image: other\n    ports: [\"4000:80\"]\n", "both publish host port 4000/tcp"},
		{"same port on two addresses", compose("    ports: [\"127.0.0.1:4000:4000\"]\n", "") + "  b:\n    image: other\n    ports: [\"127.0.0.2:4000:80\"]\n", ""},
		{"same port other protocol", compose("    ports: [\"4000:4000\"]\n", "") + "  b:\n    image: other\n    ports: [\"4000:80/udp\"]\n", ""},
		{"root", compose("    user: \"0:0\"\n", ""), "runs as root"},
		{"entrypoint", compose("    entrypoint: [sh, -c]\n", ""), "entrypoint"},
		{"bootstrap without join", strings.Replace(compose("", ""), "--data-dir=/data,", "--data-dir=/data, --bootstrap-expect=3,", 1), "without --join"},
		{"relative data dir", strings.Replace(compose("", ""), "--data-dir=/data", "--data-dir=data", 1), "want an absolute path"},
		{"sql process", sqlCompose(""), ""},
		{"sql pebble view needs a volume", strings.Replace(sqlCompose(""), "--read-model=postgres://db/read", "--read-model=pebble", 1), "on no named volume"},
		{"sql pebble view on a volume", strings.Replace(sqlCompose("    volumes: [q-data:/data]\n"), "--read-model=postgres://db/read", "--read-model=pebble, --data-dir=/data", 1), ""},
		{"sql external database", strings.Replace(sqlCompose(""), "postgres://db/read", "postgres://read.example.com/read", 1), ""},
		{"sql database not started first", strings.Replace(sqlCompose(""), "    depends_on: [db]\n", "", 1), "db is not among its depends_on"},
		{"sql database through another service", strings.Replace(sqlCompose(""), "    depends_on: [db]\n", "    depends_on: [init]\n", 1) + "  init:\n    image: other\n    depends_on: [db]\n", ""},
		{"sql role without sql", strings.Replace(compose("", ""), "--data-dir=/data,", "--data-dir=/data, --role=query,", 1), "needs --store sql"},
		{"sql advertise url", strings.Replace(sqlCompose(""), "--http-addr=0.0.0.0:4001", "--http-addr=0.0.0.0:4001, --advertise-url=http://q:4001", 1), "--advertise-url with --store sql does nothing"},
		// Protected mode and the admin token.
		{"exposed without a token file", strings.Replace(compose("", ""), ", --bootstrap-token-file=/data/admin.token", "", 1), "--http-addr 0.0.0.0:4000 can be reached from other machines, so the node refuses to start without authentication"},
		{"exposed raft without a token file", strings.Replace(compose("", ""), "--bootstrap-token-file=/data/admin.token", "--raft-addr=a:4001", 1), "--raft-addr a:4001 can be reached"},
		{"exposed nats without a token file", strings.Replace(compose("", ""), "--bootstrap-token-file=/data/admin.token", "--nats-listen=0.0.0.0:4222", 1), "--nats-listen 0.0.0.0:4222 can be reached"},
		{"token file by environment", strings.Replace(compose("", "    environment: {CHRONICLE_BOOTSTRAP_TOKEN_FILE: /data/admin.token}\n"), ", --bootstrap-token-file=/data/admin.token", "", 1), ""},
		{"insecure instead", strings.Replace(compose("", ""), "--bootstrap-token-file=/data/admin.token", "--insecure", 1), ""},
		{"sql process without authentication", strings.Replace(sqlCompose(""), ", --insecure", "", 1), "--http-addr 0.0.0.0:4001 can be reached"},
		{"sql process raft address is no listener", strings.Replace(sqlCompose(""), ", --insecure", ", --bootstrap-token-file=/t/admin.token", 1) + "    volumes: [q-data:/t]\n", ""},
		{"relative token file", strings.Replace(compose("", ""), "--bootstrap-token-file=/data/admin.token", "--bootstrap-token-file=admin.token", 1), "want an absolute path on a volume"},
		{"token file on no volume", strings.Replace(compose("", ""), "--bootstrap-token-file=/data/admin.token", "--bootstrap-token-file=/etc/admin.token", 1), "is on no volume this service mounts"},
		{"token file read-only, made by nobody", tokenCompose(false, true), "is on a read-only mount and no `chronicle token generate` service of this file makes it"},
		{"token made by a one-shot", tokenCompose(true, true), ""},
		{"token one-shot not waited for", tokenCompose(true, false), "is made by tok: depend on it with condition service_completed_successfully"},
		{"token one-shot relative out", strings.Replace(tokenCompose(true, true), "--out=/out/admin.token", "--out=admin.token", 1), `chronicle token generate --out "admin.token": want an absolute path`},
		{"status asks without a token", tokenCompose(true, true) + "  st:\n    image: chronicle:test\n    command: [cluster, status, --url, http://a:4000]\n    depends_on: {a: {condition: service_healthy}}\n", "service st: asks a, which requires an API token"},
		{"status asks with the token", tokenCompose(true, true) + "  st:\n    image: chronicle:test\n    command: [cluster, status, --url, http://a:4000, --token-file, /k/admin.token]\n    volumes: [\"keys:/k:ro\"]\n    depends_on: {a: {condition: service_healthy}}\n", ""},
		{"status token not made yet", tokenCompose(true, true) + "  st:\n    image: chronicle:test\n    command: [cluster, status, --url, http://a:4000, --token-file, /k/admin.token]\n    volumes: [\"keys:/k:ro\"]\n", "--token-file /k/admin.token is made by tok, which is not among its depends_on"},
		{"status token on no volume", tokenCompose(true, true) + "  st:\n    image: chronicle:test\n    command: [cluster, status, --url, http://a:4000, --token-file, /k/admin.token]\n    depends_on: {a: {condition: service_healthy}}\n", "--token-file /k/admin.token is on no volume this service mounts"},
		{"no services", "services: {}\n", "no services"},
		{"empty service", "services:\n  a:\n", "service a: empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := deploy.CheckCompose([]byte(c.yaml), standIn())
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused:\n%v\n%s", err, c.yaml)
			case c.want != "" && err == nil:
				t.Fatalf("passed, want an error saying %q:\n%s", c.want, c.yaml)
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Fatalf("error does not say %q:\n%v", c.want, err)
			}
		})
	}
}

const dockerfile = `# comment
ARG GO=1
FROM golang AS build
ARG VERSION=1.2.3
RUN CGO_ENABLED=0 go build -trimpath \
      # a comment inside a continued instruction
      -ldflags "-s -w -X github.com/chronicle-ledger/chronicle/node.Version=$VERSION" \
      -o /out/chronicle ./cmd/chronicle
FROM scratch
ARG VERSION=1.2.3
LABEL org.opencontainers.image.version=$VERSION
COPY --from=build /out/chronicle /bin/chronicle
ENV PATH=/bin
USER 1000
VOLUME ["/data"]
EXPOSE 4000/tcp
HEALTHCHECK --interval=5s CMD ["chronicle", "health"]
ENTRYPOINT ["chronicle"]
CMD ["serve", "--data-dir", "/data/ledger", "--http-addr", ":4000", "--advertise-url", "http://x:4000", "--bootstrap-token-file", "/data/admin.token"]
`

func TestDockerfileSyntax(t *testing.T) {
	cases := []struct{ name, old, new, want string }{
		{"valid", "", "", ""},
		{"before FROM", "ARG GO=1\n", "RUN true\n", "RUN before FROM"},
		{"two builds", "FROM scratch\n", "RUN go build ./cmd/chronicle\nFROM scratch\n", "2 go build steps"},
		{"binary off PATH", "ENV PATH=/bin", "ENV PATH=/usr/bin", "directory on ENV PATH"},
		{"no label", "LABEL org.opencontainers.image.version=$VERSION\n", "", "LABEL org.opencontainers.image.version"},
		{"healthcheck NONE", `HEALTHCHECK --interval=5s CMD ["chronicle", "health"]`, "HEALTHCHECK NONE", "HEALTHCHECK NONE"},
		{"healthcheck shell form", `HEALTHCHECK --interval=5s CMD ["chronicle", "health"]`, "HEALTHCHECK CMD chronicle health", "want the exec form"},
		{"root by number", "USER 1000", "USER 0:0", "is root"},
		{"CMD not serve", `CMD ["serve", "--data-dir"`, `CMD ["health", "--data-dir"`, "flag provided but not defined: -data-dir"},
		{"no FROM", dockerfile, "# nothing\n", "no FROM"},
		{"CMD without authentication", `, "--bootstrap-token-file", "/data/admin.token"]`, "]", "--http-addr :4000 can be reached from other machines"},
		{"CMD insecure", `"--bootstrap-token-file", "/data/admin.token"]`, `"--insecure"]`, ""},
		{"CMD token off the volume", `"/data/admin.token"]`, `"/admin.token"]`, "CMD --bootstrap-token-file /admin.token is on no VOLUME"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text := dockerfile
			if c.old != "" {
				if !strings.Contains(text, c.old) {
					t.Fatalf("no %q to replace", c.old)
				}
				text = strings.Replace(text, c.old, c.new, 1)
			}
			err := deploy.CheckDockerfile([]byte(text), standIn())
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused:\n%v", err)
			case c.want != "" && err == nil:
				t.Fatalf("passed, want an error saying %q", c.want)
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Fatalf("error does not say %q:\n%v", c.want, err)
			}
		})
	}
}

// TestFiles: the embedded files are the ones in this directory, and the README lists
// every compose file.
func TestFiles(t *testing.T) {
	names, err := deploy.ComposeFiles()
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 2 {
		t.Fatalf("compose files: %q", names)
	}
	if _, err := fs.ReadFile(deploy.Files(), "compose/README.md"); err == nil {
		t.Fatal("compose/README.md is embedded; the embed pattern is wider than intended")
	}
	if _, err := fs.ReadFile(deploy.Files(), "Dockerfile"); err != nil {
		t.Fatal(err)
	}
}

// TestNoProtectedMode: a binary without --bootstrap-token-file has no protected mode, so
// an exposed node without a token file passes; with the flag it is refused.
func TestNoProtectedMode(t *testing.T) {
	open := strings.Replace(compose("", ""), ", --bootstrap-token-file=/data/admin.token", "", 1)
	if err := deploy.CheckCompose([]byte(open), standInBinary(false)); err != nil {
		t.Fatalf("refused by a binary without protected mode:\n%v", err)
	}
	if err := deploy.CheckCompose([]byte(open), standInBinary(true)); err == nil || !strings.Contains(err.Error(), "refuses to start without authentication") {
		t.Fatalf("with protected mode: %v", err)
	}
}
