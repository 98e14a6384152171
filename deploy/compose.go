package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The subset of the Compose file format these deployments use. Decoding is strict: a key
// that is not modelled here (a typo such as depend_on, or a feature the checks do not
// understand) is an error, so nothing in a compose file escapes the checks unread.

type composeFile struct {
	Name     string                  `yaml:"name"`
	Services map[string]*service     `yaml:"services"`
	Volumes  map[string]*volumeDecl  `yaml:"volumes"`
	Networks map[string]*networkDecl `yaml:"networks"`
	Extra    map[string]yaml.Node    `yaml:",inline"` // x-* extension fields only
}

type volumeDecl struct {
	Name     string            `yaml:"name"`
	Driver   string            `yaml:"driver"`
	External bool              `yaml:"external"`
	Labels   map[string]string `yaml:"labels"`
}

type networkDecl struct {
	Driver string `yaml:"driver"`
	IPAM   struct {
		Config []struct {
			Subnet string `yaml:"subnet"`
		} `yaml:"config"`
	} `yaml:"ipam"`
}

type service struct {
	Image           string         `yaml:"image"`
	Build           *build         `yaml:"build"`
	Hostname        string         `yaml:"hostname"`
	Entrypoint      stringList     `yaml:"entrypoint"`
	Command         stringList     `yaml:"command"`
	Environment     environment    `yaml:"environment"`
	Ports           []port         `yaml:"ports"`
	Volumes         []mount        `yaml:"volumes"`
	Tmpfs           stringList     `yaml:"tmpfs"`
	DependsOn       dependsOn      `yaml:"depends_on"`
	Healthcheck     *healthcheck   `yaml:"healthcheck"`
	Networks        serviceNetwork `yaml:"networks"`
	Profiles        []string       `yaml:"profiles"`
	Restart         string         `yaml:"restart"`
	StopGracePeriod string         `yaml:"stop_grace_period"`
	User            string         `yaml:"user"`
}

type build struct {
	Context    string            `yaml:"context"`
	Dockerfile string            `yaml:"dockerfile"`
	Args       map[string]string `yaml:"args"`
}

type healthcheck struct {
	Test          healthTest `yaml:"test"`
	Interval      string     `yaml:"interval"`
	Timeout       string     `yaml:"timeout"`
	StartPeriod   string     `yaml:"start_period"`
	StartInterval string     `yaml:"start_interval"`
	Retries       int        `yaml:"retries"`
	Disable       bool       `yaml:"disable"`
}

// healthTest is a health check's test. Written as a string, Compose runs it with
// CMD-SHELL; shell records that.
type healthTest struct {
	args  stringList
	shell bool
}

func (t *healthTest) UnmarshalYAML(n *yaml.Node) error {
	t.shell = n.Kind == yaml.ScalarNode
	if t.shell {
		t.args = stringList{n.Value}
		return nil
	}
	return t.args.UnmarshalYAML(n)
}

// stringList is a command, entrypoint or health check test: a list, or a string that
// Compose splits like a shell would. Only strings without quotes are accepted here, so
// that the split is not in doubt.
type stringList []string

func (l *stringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if strings.ContainsAny(n.Value, `"'\$`) {
			return fmt.Errorf("line %d: %q: write it as a list; quoting in the string form is not checked", n.Line, n.Value)
		}
		*l = strings.Fields(n.Value)
		return nil
	case yaml.SequenceNode:
		var s []string
		if err := decodeStrict(n, &s); err != nil {
			return err
		}
		*l = s
		return nil
	}
	return fmt.Errorf("line %d: want a string or a list", n.Line)
}

// environment is a service's variables: a map, or a list of NAME=value. A variable
// without a value (passed through from the host) has set false.
type environment map[string]envValue

type envValue struct {
	value string
	set   bool
}

func (e *environment) UnmarshalYAML(n *yaml.Node) error {
	out := environment{}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: environment %s: want a scalar", v.Line, k.Value)
			}
			out[k.Value] = envValue{value: v.Value, set: v.Tag != "!!null"}
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			name, value, ok := strings.Cut(c.Value, "=")
			out[name] = envValue{value: value, set: ok}
		}
	default:
		return fmt.Errorf("line %d: environment: want a map or a list", n.Line)
	}
	*e = out
	return nil
}

// dependsOn maps each service depended on to its condition.
type dependsOn map[string]string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	out := dependsOn{}
	switch n.Kind {
	case yaml.SequenceNode:
		var names []string
		if err := decodeStrict(n, &names); err != nil {
			return err
		}
		for _, s := range names {
			out[s] = "service_started"
		}
	case yaml.MappingNode:
		var m map[string]struct {
			Condition string `yaml:"condition"`
			Restart   bool   `yaml:"restart"`
			Required  *bool  `yaml:"required"`
		}
		if err := decodeStrict(n, &m); err != nil {
			return err
		}
		for s, c := range m {
			out[s] = c.Condition
			if c.Condition == "" {
				out[s] = "service_started"
			}
		}
	default:
		return fmt.Errorf("line %d: depends_on: want a list or a map", n.Line)
	}
	*d = out
	return nil
}

// serviceNetwork is a service's networks: a list of names or a map of name to settings.
type serviceNetwork map[string]networkAttachment

type networkAttachment struct {
	IPv4Address string   `yaml:"ipv4_address"`
	Aliases     []string `yaml:"aliases"`
}

func (s *serviceNetwork) UnmarshalYAML(n *yaml.Node) error {
	out := map[string]networkAttachment{}
	switch n.Kind {
	case yaml.SequenceNode:
		var names []string
		if err := decodeStrict(n, &names); err != nil {
			return err
		}
		for _, name := range names {
			out[name] = networkAttachment{}
		}
	case yaml.MappingNode:
		if err := decodeStrict(n, &out); err != nil {
			return err
		}
	default:
		return fmt.Errorf("line %d: networks: want a list or a map", n.Line)
	}
	*s = out
	return nil
}

// port is one published port: short syntax ("[ip:][host:]container[/proto]", ranges
// allowed) or long syntax.
type port struct {
	HostIP    string
	Host      []int // empty: not published on a fixed host port
	Container []int
	Protocol  string
}

func (p *port) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		var l struct {
			Target    int    `yaml:"target"`
			Published string `yaml:"published"`
			HostIP    string `yaml:"host_ip"`
			Protocol  string `yaml:"protocol"`
			Mode      string `yaml:"mode"`
			Name      string `yaml:"name"`
		}
		if err := decodeStrict(n, &l); err != nil {
			return err
		}
		*p = port{HostIP: l.HostIP, Container: []int{l.Target}, Protocol: protocol(l.Protocol)}
		if l.Published != "" {
			h, err := portRange(l.Published)
			if err != nil {
				return fmt.Errorf("line %d: published: %w", n.Line, err)
			}
			p.Host = h
		}
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: port: want a string or a map", n.Line)
	}
	s, proto, _ := strings.Cut(n.Value, "/")
	var ip, host, container string
	if i := strings.LastIndex(s, ":"); i < 0 {
		container = s
	} else {
		container, s = s[i+1:], s[:i]
		if j := strings.LastIndex(s, ":"); j < 0 {
			host = s
		} else {
			ip, host = strings.Trim(s[:j], "[]"), s[j+1:]
		}
	}
	c, err := portRange(container)
	if err != nil {
		return fmt.Errorf("line %d: port %q: %w", n.Line, n.Value, err)
	}
	*p = port{HostIP: ip, Container: c, Protocol: protocol(proto)}
	if host != "" {
		if p.Host, err = portRange(host); err != nil {
			return fmt.Errorf("line %d: port %q: %w", n.Line, n.Value, err)
		}
		if len(p.Host) != len(p.Container) {
			return fmt.Errorf("line %d: port %q: host and container ranges differ in length", n.Line, n.Value)
		}
	}
	return nil
}

func protocol(p string) string {
	if p == "" {
		return "tcp"
	}
	return p
}

func portRange(s string) ([]int, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := portNumber(lo)
	if err != nil {
		return nil, err
	}
	b := a
	if isRange {
		if b, err = portNumber(hi); err != nil {
			return nil, err
		}
	}
	if b < a {
		return nil, fmt.Errorf("range %q runs backwards", s)
	}
	var out []int
	for i := a; i <= b; i++ {
		out = append(out, i)
	}
	return out, nil
}

func portNumber(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	return n, nil
}

// mount is one of a service's volumes: short syntax "source:target[:mode]" or long.
type mount struct {
	Type     string // volume or bind
	Source   string
	Target   string
	ReadOnly bool
}

func (m *mount) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		var l struct {
			Type     string `yaml:"type"`
			Source   string `yaml:"source"`
			Target   string `yaml:"target"`
			ReadOnly bool   `yaml:"read_only"`
		}
		if err := decodeStrict(n, &l); err != nil {
			return err
		}
		*m = mount{Type: l.Type, Source: l.Source, Target: l.Target, ReadOnly: l.ReadOnly}
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: volume: want a string or a map", n.Line)
	}
	parts := strings.Split(n.Value, ":")
	switch len(parts) {
	case 1:
		*m = mount{Type: "volume", Target: parts[0]} // anonymous volume
	case 2, 3:
		*m = mount{Type: "volume", Source: parts[0], Target: parts[1], ReadOnly: len(parts) == 3 && slices.Contains(strings.Split(parts[2], ","), "ro")}
		if strings.HasPrefix(parts[0], "/") || strings.HasPrefix(parts[0], ".") || strings.HasPrefix(parts[0], "~") {
			m.Type = "bind"
		}
	default:
		return fmt.Errorf("line %d: volume %q: want source:target[:mode]", n.Line, n.Value)
	}
	return nil
}

// decodeStrict decodes n into v refusing unknown keys (Node.Decode alone would not:
// a custom unmarshaler's decoder does not inherit KnownFields).
func decodeStrict(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}

// parseCompose decodes a compose file strictly.
func parseCompose(data []byte) (*composeFile, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f composeFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	var errs []error
	for k := range f.Extra {
		if !strings.HasPrefix(k, "x-") {
			errs = append(errs, fmt.Errorf("top-level key %q is not one these checks know (name, services, volumes, networks, x-*)", k))
		}
	}
	return &f, errors.Join(errs...)
}
