package deploy

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The monitoring services of a compose file: Prometheus (prom/prometheus) scraping every
// node's /metrics with deploy/prometheus/prometheus.yml, and Grafana (grafana/grafana)
// provisioned from deploy/grafana. Nothing here runs them; the checks hold the files to
// what the nodes of the compose file serve.

// promConfig is the part of a Prometheus configuration the checks read.
type promConfig struct {
	ScrapeConfigs []scrapeConfig `yaml:"scrape_configs"`
}

type scrapeConfig struct {
	JobName       string `yaml:"job_name"`
	Scheme        string `yaml:"scheme"`
	MetricsPath   string `yaml:"metrics_path"`
	Authorization *struct {
		Type            string `yaml:"type"`
		Credentials     string `yaml:"credentials"`
		CredentialsFile string `yaml:"credentials_file"`
	} `yaml:"authorization"`
	TLSConfig *struct {
		CAFile     string `yaml:"ca_file"`
		ServerName string `yaml:"server_name"`
	} `yaml:"tls_config"`
	StaticConfigs []struct {
		Targets []string `yaml:"targets"`
	} `yaml:"static_configs"`
}

// grafanaDatasources is a Grafana datasource provisioning file.
type grafanaDatasources struct {
	Datasources []struct {
		Name string `yaml:"name"`
		Type string `yaml:"type"`
		UID  string `yaml:"uid"`
		URL  string `yaml:"url"`
	} `yaml:"datasources"`
}

// grafanaProviders is a Grafana dashboard provider provisioning file.
type grafanaProviders struct {
	Providers []struct {
		Name    string `yaml:"name"`
		Type    string `yaml:"type"`
		Options struct {
			Path string `yaml:"path"`
		} `yaml:"options"`
	} `yaml:"providers"`
}

// monitoringImage tells the monitoring services apart by image.
func monitoringImage(s *service) string {
	repo, _, _ := strings.Cut(s.Image, ":")
	switch repo {
	case "prom/prometheus", "grafana/grafana", "grafana/grafana-oss":
		return repo
	}
	return ""
}

// repoPath is where a bind mount's source (relative to deploy/compose) lies in the
// deployment files, and whether it lies inside them at all.
func repoPath(source string) (string, bool) {
	p := path.Clean(path.Join("compose", source))
	if path.IsAbs(source) || p == ".." || strings.HasPrefix(p, "../") {
		return "", false
	}
	return p, true
}

// checkMonitoring checks the Prometheus and Grafana services of f against its nodes;
// repo holds the deployment files (Files(), or a variant in tests).
func checkMonitoring(f *composeFile, repo fs.FS, nodes map[string]*node, names map[string]string) []error {
	var errs []error
	var proms []string
	for _, name := range sortedKeys(f.Services) {
		s := f.Services[name]
		kind := monitoringImage(s)
		if kind == "" {
			continue
		}
		fail := func(err error) { errs = append(errs, fmt.Errorf("service %s: %w", name, err)) }
		if err := pinned(s.Image); err != nil {
			fail(err)
		}
		for _, m := range s.Volumes {
			if m.Type != "bind" {
				continue
			}
			p, ok := repoPath(m.Source)
			if !ok {
				fail(fmt.Errorf("bind mount %s: want a path inside the repository's deploy directory", m.Source))
				continue
			}
			if _, err := fs.Stat(repo, p); err != nil {
				fail(fmt.Errorf("bind mount %s: deploy/%s is not in the repository", m.Source, p))
			}
			if !m.ReadOnly {
				fail(fmt.Errorf("bind mount %s: mount the repository's files read-only (:ro)", m.Source))
			}
		}
		switch kind {
		case "prom/prometheus":
			proms = append(proms, name)
			for _, err := range checkPrometheus(f, repo, name, nodes, names) {
				fail(err)
			}
		default:
			for _, err := range checkGrafana(f, repo, name) {
				fail(err)
			}
		}
	}
	if len(proms) > 1 {
		errs = append(errs, fmt.Errorf("services %s all run Prometheus: one scrapes every node", strings.Join(proms, ", ")))
	}
	return errs
}

// pinned refuses an image without a tag, or with a moving one.
func pinned(image string) error {
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") {
		return fmt.Errorf("image %s: pin a version tag", image)
	}
	tag := image[i+1:]
	if tag == "latest" || tag == "main" || !strings.ContainsAny(tag, "0123456789") {
		return fmt.Errorf("image %s: tag %q moves; pin a version", image, tag)
	}
	return nil
}

// flagValue is --name=value or --name value in args ("" when absent).
func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// mountedFile is the repository file (deploy/...) a bind mount of s puts at target.
func mountedFile(s *service, target string) (string, bool) {
	for _, m := range s.Volumes {
		if m.Type == "bind" && path.Clean(m.Target) == path.Clean(target) {
			return repoPath(m.Source)
		}
	}
	return "", false
}

// checkPrometheus checks the Prometheus service name: it mounts a configuration from the
// repository whose jobs scrape every node of the file at its API port, over HTTPS with the
// cluster CA where the node serves it, with the nodes' token file (on a volume Prometheus
// mounts read-only) where they require tokens; a job targets either this file's services
// only (a job of this deployment) or none of them (another deployment's).
func checkPrometheus(f *composeFile, repo fs.FS, name string, nodes map[string]*node, names map[string]string) []error {
	s := f.Services[name]
	conf := flagValue(s.Command, "config.file")
	if conf == "" {
		conf = "/etc/prometheus/prometheus.yml"
	}
	file, ok := mountedFile(s, conf)
	if !ok {
		return []error{fmt.Errorf("--config.file %s: mount deploy/prometheus/prometheus.yml there (read-only)", conf)}
	}
	data, err := fs.ReadFile(repo, file)
	if err != nil {
		return []error{fmt.Errorf("--config.file %s: %w", conf, err)}
	}
	var pc promConfig
	if err := yaml.Unmarshal(data, &pc); err != nil {
		return []error{fmt.Errorf("deploy/%s: %w", file, err)}
	}
	var errs []error
	fail := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("deploy/%s: "+format, append([]any{file}, a...)...))
	}
	scraped := map[string]bool{}
	for _, job := range pc.ScrapeConfigs {
		var here, elsewhere []string
		for _, sc := range job.StaticConfigs {
			for _, t := range sc.Targets {
				host, _, err := net.SplitHostPort(t)
				if err != nil {
					fail("job %s: target %q: want host:port", job.JobName, t)
					continue
				}
				if _, ok := names[host]; ok {
					here = append(here, t)
				} else {
					elsewhere = append(elsewhere, t)
				}
			}
		}
		if len(here) == 0 {
			continue // another deployment's job
		}
		if len(elsewhere) > 0 {
			fail("job %s targets %s, services of this file, and %s, which are not: keep one deployment per job", job.JobName, strings.Join(here, ", "), strings.Join(elsewhere, ", "))
		}
		if job.MetricsPath != "" && job.MetricsPath != "/metrics" {
			fail("job %s: metrics_path %s: the nodes serve /metrics", job.JobName, job.MetricsPath)
		}
		for _, t := range here {
			host, portText, _ := net.SplitHostPort(t)
			svc := names[host]
			n := nodes[svc]
			port, _ := strconv.Atoi(portText)
			switch {
			case n == nil:
				fail("job %s: target %s: service %s runs no chronicle serve", job.JobName, t, svc)
				continue
			case port != n.httpPort:
				fail("job %s: target %s: %s serves its API on container port %d", job.JobName, t, svc, n.httpPort)
				continue
			}
			scraped[svc] = true
			for _, err := range checkScrapeAuth(f, s, job, n, t) {
				fail("%v", err)
			}
		}
	}
	for _, svc := range sortedKeys(nodes) {
		if !scraped[svc] {
			fail("no job scrapes service %s (its API at %s:%d)", svc, svc, nodes[svc].httpPort)
		}
	}
	return errs
}

// checkScrapeAuth checks how a job reaches node n (target t): the scheme it serves, the
// CA it is signed by, the token file it requires.
func checkScrapeAuth(f *composeFile, prom *service, job scrapeConfig, n *node, t string) []error {
	var errs []error
	fail := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("job %s: target %s: "+format, append([]any{job.JobName, t}, a...)...))
	}
	scheme := job.Scheme
	if scheme == "" {
		scheme = "http"
	}
	node := f.Services[n.service]
	if n.tlsFiles != nil {
		if scheme != "https" {
			fail("the node serves HTTPS (cluster TLS): set scheme: https")
		}
		switch ca := ""; {
		case job.TLSConfig == nil || job.TLSConfig.CAFile == "":
			fail("the node's certificate is signed by the cluster CA: set tls_config.ca_file to %s on a volume Prometheus mounts", n.tlsFiles[0])
		default:
			ca = job.TLSConfig.CAFile
			want, _, ok1 := fileOn(node, n.tlsFiles[0])
			got, m, ok2 := fileOn(prom, ca)
			if !ok1 || !ok2 || want != got {
				fail("tls_config.ca_file %s is not the node's --tls-ca %s (mount its volume)", ca, n.tlsFiles[0])
			} else if !m.ReadOnly {
				fail("tls_config.ca_file %s: mount the volume read-only", ca)
			}
		}
	} else if scheme != "http" {
		fail("scheme %s: the node serves plain HTTP", scheme)
	}
	if n.tokenFile == "" {
		return errs
	}
	a := job.Authorization
	switch {
	case a == nil || a.CredentialsFile == "":
		fail("the node requires a token (--bootstrap-token-file): set authorization.credentials_file to a token file on a volume Prometheus mounts")
	case a.Credentials != "":
		fail("authorization.credentials: a secret in the repository; use credentials_file")
	case a.Type != "" && !strings.EqualFold(a.Type, "Bearer"):
		fail("authorization.type %s: the API takes Bearer tokens", a.Type)
	default:
		want, _, ok1 := fileOn(node, n.tokenFile)
		got, m, ok2 := fileOn(prom, a.CredentialsFile)
		if !ok1 || !ok2 || want != got {
			fail("authorization.credentials_file %s is not the node's token file %s (mount its volume)", a.CredentialsFile, n.tokenFile)
		} else if !m.ReadOnly {
			fail("authorization.credentials_file %s: mount the volume read-only", a.CredentialsFile)
		}
	}
	return errs
}

// checkGrafana checks the Grafana service name: its provisioning directory (from the
// repository) names a Prometheus datasource at this file's Prometheus service, and a
// dashboard provider whose path the service mounts from deploy/grafana/dashboards.
func checkGrafana(f *composeFile, repo fs.FS, name string) []error {
	s := f.Services[name]
	dir, ok := mountedFile(s, "/etc/grafana/provisioning")
	if !ok {
		return []error{errors.New("mount deploy/grafana/provisioning at /etc/grafana/provisioning (read-only)")}
	}
	var errs []error
	sources, _ := fs.Glob(repo, path.Join(dir, "datasources", "*.yml"))
	providers, _ := fs.Glob(repo, path.Join(dir, "dashboards", "*.yml"))
	if len(sources) == 0 || len(providers) == 0 {
		return []error{fmt.Errorf("deploy/%s: want datasources/*.yml and dashboards/*.yml", dir)}
	}
	found := false
	for _, file := range sources {
		var ds grafanaDatasources
		if err := decodeFile(repo, file, &ds); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, d := range ds.Datasources {
			if d.Type != "prometheus" {
				continue
			}
			found = true
			host, port, err := hostPort(strings.TrimPrefix(strings.TrimPrefix(d.URL, "http://"), "https://"))
			target, ok := f.Services[host]
			switch {
			case err != nil || !strings.HasPrefix(d.URL, "http"):
				errs = append(errs, fmt.Errorf("deploy/%s: datasource %s: url %q: want http://service:port", file, d.Name, d.URL))
			case !ok || monitoringImage(target) != "prom/prometheus":
				errs = append(errs, fmt.Errorf("deploy/%s: datasource %s: %s is not this file's Prometheus service", file, d.Name, host))
			case port != promPort(target):
				errs = append(errs, fmt.Errorf("deploy/%s: datasource %s: Prometheus listens on %d, not %d", file, d.Name, promPort(target), port))
			}
			if s.DependsOn[host] == "" && ok {
				errs = append(errs, fmt.Errorf("depends_on: Grafana's datasource is %s; start it first", host))
			}
		}
	}
	if !found {
		errs = append(errs, fmt.Errorf("deploy/%s: no Prometheus datasource", dir))
	}
	for _, file := range providers {
		var pp grafanaProviders
		if err := decodeFile(repo, file, &pp); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, p := range pp.Providers {
			dash, ok := mountedFile(s, p.Options.Path)
			if !ok {
				errs = append(errs, fmt.Errorf("deploy/%s: provider %s reads %s, which the service does not mount from the repository", file, p.Name, p.Options.Path))
				continue
			}
			if js, _ := fs.Glob(repo, path.Join(dash, "*.json")); len(js) == 0 {
				errs = append(errs, fmt.Errorf("deploy/%s: provider %s: no dashboards in deploy/%s", file, p.Name, dash))
			}
		}
	}
	return errs
}

// promPort is the port a Prometheus service listens on (--web.listen-address; 9090).
func promPort(s *service) int {
	if addr := flagValue(s.Command, "web.listen-address"); addr != "" {
		if _, p, err := hostPort(addr); err == nil {
			return p
		}
	}
	return 9090
}

func decodeFile(repo fs.FS, file string, v any) error {
	data, err := fs.ReadFile(repo, file)
	if err != nil {
		return fmt.Errorf("deploy/%s: %w", file, err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		return fmt.Errorf("deploy/%s: %w", file, err)
	}
	return nil
}

// PrometheusJobs lists the scrape jobs of deploy/prometheus/prometheus.yml with their
// targets (for tests and docs).
func PrometheusJobs() (map[string][]string, error) {
	var pc promConfig
	if err := decodeFile(files, "prometheus/prometheus.yml", &pc); err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, j := range pc.ScrapeConfigs {
		for _, sc := range j.StaticConfigs {
			out[j.JobName] = append(out[j.JobName], sc.Targets...)
		}
		slices.Sort(out[j.JobName])
	}
	return out, nil
}
