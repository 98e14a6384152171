package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case
	args string
}

// parseDockerfile splits a Dockerfile into instructions grouped by build stage.
func parseDockerfile(data string) ([][]instruction, error) {
	var stages [][]instruction
	var cur strings.Builder
	start := 0
	lines := strings.Split(data, "\n")
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if cur.Len() == 0 && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(t, "#") {
			continue // a comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if cont, ok := strings.CutSuffix(t, "\\"); ok {
			cur.WriteString(cont + " ")
			if i < len(lines)-1 {
				continue
			}
		} else {
			cur.WriteString(t)
		}
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		cur.Reset()
		in := instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if in.cmd == "ARG" {
				continue // a global ARG before the first FROM
			}
			return nil, fmt.Errorf("line %d: %s before FROM", in.line, in.cmd)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if len(stages) == 0 {
		return nil, errors.New("no FROM")
	}
	return stages, nil
}

// execForm decodes a JSON-array (exec form) argument list.
func execForm(in instruction, s string) ([]string, error) {
	var args []string
	if err := json.Unmarshal([]byte(s), &args); err != nil || len(args) == 0 {
		return nil, fmt.Errorf("line %d: %s %s: want the exec form [\"...\", ...]: the image has no shell", in.line, in.cmd, s)
	}
	return args, nil
}

// CheckDockerfile checks deploy/Dockerfile against the binary; the error joins every
// problem found.
func CheckDockerfile(data []byte, b Binary) error {
	stages, err := parseDockerfile(string(data))
	if err != nil {
		return err
	}
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if len(stages) < 2 {
		fail("one stage: want a Go builder stage and a minimal final stage")
	}
	final := stages[len(stages)-1]
	if base := strings.Fields(final[0].args); len(base) == 0 || (base[0] != "scratch" && !strings.Contains(base[0], "distroless")) {
		fail("line %d: final stage FROM %s: want scratch or a distroless static image", final[0].line, final[0].args)
	}

	// The build: static, stripped, reproducible paths, version stamped.
	builds := 0
	wantVersionArg := "VERSION=" + b.Version
	for _, st := range stages[:len(stages)-1] {
		for _, in := range st {
			if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
				continue
			}
			builds++
			for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-s -w", "-X github.com/chronicle-ledger/chronicle/node.Version=$VERSION", "./cmd/chronicle"} {
				if !strings.Contains(in.args, want) {
					fail("line %d: go build without %s", in.line, want)
				}
			}
			if !slices.ContainsFunc(st, func(a instruction) bool { return a.cmd == "ARG" && a.args == wantVersionArg }) {
				fail("build stage: no ARG %s (its default must be the binary's version)", wantVersionArg)
			}
		}
	}
	if builds != 1 {
		fail("%d go build steps in the builder stages: want one", builds)
	}

	var (
		users, volumes, exposed, pathDirs []string
		binary, entry, cmd, health        []string
		label, versionArg                 bool
	)
	for _, in := range final {
		switch in.cmd {
		case "USER":
			users = append(users, in.args)
		case "VOLUME":
			if strings.HasPrefix(in.args, "[") {
				v, err := execForm(in, in.args)
				if err != nil {
					errs = append(errs, err)
				}
				volumes = append(volumes, v...)
			} else {
				volumes = append(volumes, strings.Fields(in.args)...)
			}
		case "EXPOSE":
			exposed = append(exposed, strings.Fields(in.args)...)
		case "ENV":
			for _, kv := range strings.Fields(in.args) {
				if v, ok := strings.CutPrefix(kv, "PATH="); ok {
					pathDirs = strings.Split(v, ":")
				}
			}
		case "ARG":
			versionArg = versionArg || in.args == wantVersionArg
		case "LABEL":
			label = label || strings.Contains(in.args, "org.opencontainers.image.version=\"$VERSION\"") ||
				strings.Contains(in.args, "org.opencontainers.image.version=$VERSION")
		case "COPY":
			if f := strings.Fields(in.args); len(f) >= 2 && path.Base(f[len(f)-1]) == "chronicle" {
				binary = append(binary, f[len(f)-1])
			}
		case "ENTRYPOINT":
			if entry, err = execForm(in, in.args); err != nil {
				errs = append(errs, err)
			}
		case "CMD":
			if cmd, err = execForm(in, in.args); err != nil {
				errs = append(errs, err)
			}
		case "HEALTHCHECK":
			f := strings.Fields(in.args)
			i := slices.IndexFunc(f, func(s string) bool { return !strings.HasPrefix(s, "--") })
			if i < 0 || f[i] != "CMD" {
				fail("line %d: HEALTHCHECK %s: want HEALTHCHECK [options] CMD [\"chronicle\", \"health\", ...]", in.line, in.args)
				continue
			}
			_, rest, _ := strings.Cut(in.args, " CMD ")
			if health, err = execForm(in, strings.TrimSpace(rest)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(users) == 0 {
		fail("final stage has no USER: it would run as root")
	} else if u, _, _ := strings.Cut(users[len(users)-1], ":"); u == "0" || u == "root" || u == "" {
		fail("final stage USER %s is root", users[len(users)-1])
	}
	if !versionArg || !label {
		fail("final stage: want ARG %s and LABEL org.opencontainers.image.version=\"$VERSION\"", wantVersionArg)
	}
	if len(binary) != 1 || !slices.Contains(pathDirs, path.Dir(binary[0])) {
		fail("final stage: want the binary copied to a directory on ENV PATH (copied to %q, PATH %q)", binary, pathDirs)
	}
	if !slices.Equal(entry, []string{"chronicle"}) {
		fail("ENTRYPOINT %q: want [\"chronicle\"]", entry)
	}
	if cmd == nil {
		fail("final stage: no CMD in the exec form")
		return errors.Join(errs...)
	}
	inv, err := b.parse(cmd, nil, true)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("CMD: %w", err))...)
	}
	if inv.command != "serve" {
		fail("CMD runs chronicle %s: want serve", inv.command)
		return errors.Join(errs...)
	}
	n, serveErrs := checkServe(inv)
	for _, err := range serveErrs {
		errs = append(errs, fmt.Errorf("CMD: %w", err))
	}
	if !slices.ContainsFunc(volumes, func(v string) bool { return within(n.dataDir, v) }) {
		fail("CMD --data-dir %s is on no VOLUME (have %q)", n.dataDir, volumes)
	}
	if n.tokenFile != "" && !slices.ContainsFunc(volumes, func(v string) bool { return within(n.tokenFile, v) }) {
		fail("CMD --bootstrap-token-file %s is on no VOLUME (have %q): the admin token would be lost with the container", n.tokenFile, volumes)
	}
	if p := n.httpPort; !slices.Contains(exposed, fmt.Sprint(p)) && !slices.Contains(exposed, fmt.Sprintf("%d/tcp", p)) {
		fail("EXPOSE %q: the node's API listens on %d", exposed, p)
	}
	if len(health) < 2 || health[0] != "chronicle" {
		fail("HEALTHCHECK %q: want CMD [\"chronicle\", \"health\", ...] (no curl, no shell in the image)", health)
	} else if err := checkHealth(b, health[1:], nil, n); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
