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
func checkMonitoring(f *composeFile, repo fs.FS, nodes map[string]*node, names map[string]string, runs oneShots) []error {
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
			for _, err := range checkPrometheus(f, repo, name, nodes, names, runs) {
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
// cluster CA where the node serves it, with a reader token of its own where the nodes
// require tokens; a job targets either this file's services only (a job of this
// deployment) or none of them (another deployment's). It mounts no volume holding a
// secret of the nodes: its UI is published, and whoever gets into its container has what
// it mounts.
func checkPrometheus(f *composeFile, repo fs.FS, name string, nodes map[string]*node, names map[string]string, runs oneShots) []error {
	s := f.Services[name]
	mountErrs := checkPrometheusMounts(f, s, nodes, runs)
	conf := flagValue(s.Command, "config.file")
	if conf == "" {
		conf = "/etc/prometheus/prometheus.yml"
	}
	file, ok := mountedFile(s, conf)
	if !ok {
		return append(mountErrs, fmt.Errorf("--config.file %s: mount deploy/prometheus/prometheus.yml there (read-only)", conf))
	}
	data, err := fs.ReadFile(repo, file)
	if err != nil {
		return append(mountErrs, fmt.Errorf("--config.file %s: %w", conf, err))
	}
	var pc promConfig
	if err := yaml.Unmarshal(data, &pc); err != nil {
		return append(mountErrs, fmt.Errorf("deploy/%s: %w", file, err))
	}
	errs := mountErrs
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
			for _, err := range checkScrapeAuth(f, s, job, n, t, runs) {
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

// secretVolumes maps each volume of f that holds a secret of the nodes to what it holds:
// a node's data directory (the ledger itself, and the admin token the node writes
// there), TLS keys, the cluster CA's key, an admin token, a token of more than the reader
// role.
func secretVolumes(f *composeFile, nodes map[string]*node, runs oneShots) map[string]string {
	secret := map[string]string{}
	add := func(volume, what string) {
		if _, ok := secret[volume]; !ok && volume != "" {
			secret[volume] = what
		}
	}
	for _, name := range sortedKeys(nodes) {
		n, s := nodes[name], f.Services[name]
		if path.IsAbs(n.dataDir) {
			if m, ok := mountOf(s, n.dataDir); ok {
				add(m.Source, fmt.Sprintf("is the data directory of %s (--data-dir %s)", name, n.dataDir))
			}
		}
		if n.tlsFiles != nil {
			if vf, _, ok := fileOn(s, n.tlsFiles[2]); ok {
				add(vf.source, fmt.Sprintf("holds %s's TLS private key (--tls-key %s)", name, n.tlsFiles[2]))
			}
		}
		if n.tokenFile != "" {
			if vf, _, ok := fileOn(s, n.tokenFile); ok {
				add(vf.source, fmt.Sprintf("holds the admin token %s starts with (--bootstrap-token-file %s)", name, n.tokenFile))
			}
		}
	}
	for _, r := range runs.certs {
		if m, ok := mountOf(f.Services[r.service], r.out); ok {
			add(m.Source, fmt.Sprintf("holds the private keys %s writes (the cluster CA's and the nodes')", r.service))
		}
	}
	for _, r := range runs.tokens {
		if vf, _, ok := fileOn(f.Services[r.service], r.out); ok {
			add(vf.source, fmt.Sprintf("holds the admin token %s writes", r.service))
		}
	}
	for _, r := range runs.creates {
		if vf, _, ok := fileOn(f.Services[r.service], r.out); ok && r.role != "reader" {
			add(vf.source, fmt.Sprintf("holds the %s token %s writes", r.role, r.service))
		}
	}
	return secret
}

// checkPrometheusMounts refuses a Prometheus service mounting a volume that holds a
// secret of the nodes: it gets its own reader token and the public CA certificate on a
// volume of their own.
func checkPrometheusMounts(f *composeFile, prom *service, nodes map[string]*node, runs oneShots) []error {
	secret := secretVolumes(f, nodes, runs)
	var errs []error
	for _, m := range prom.Volumes {
		if what, ok := secret[m.Source]; ok && m.Type == "volume" {
			errs = append(errs, fmt.Errorf("mounts volume %s, which %s: anyone who gets into the Prometheus container would have it; "+
				"mount only the volume a one-shot `chronicle token create --role reader --out FILE` writes its token to", m.Source, what))
		}
	}
	return errs
}

// creator is the token create run of f that writes vf.
func creator(f *composeFile, runs oneShots, vf volumeFile) *createRun {
	for i, r := range runs.creates {
		if out, _, ok := fileOn(f.Services[r.service], r.out); ok && out == vf {
			return &runs.creates[i]
		}
	}
	return nil
}

// checkScrapeAuth checks how a job reaches node n (target t): the scheme it serves, the
// CA it is signed by (the node's --tls-ca, or a copy a token create one-shot makes), the
// token it requires: a reader token a token create one-shot makes, never the admin token.
func checkScrapeAuth(f *composeFile, prom *service, job scrapeConfig, n *node, t string, runs oneShots) []error {
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
			var copier *createRun
			for i, r := range runs.creates {
				out, _, ok3 := fileOn(f.Services[r.service], r.cacertOut)
				src, _, ok4 := fileOn(f.Services[r.service], r.cacert)
				if ok1 && ok2 && ok3 && ok4 && out == got && src == want {
					copier = &runs.creates[i]
				}
			}
			switch {
			case !ok1 || !ok2 || (want != got && copier == nil):
				fail("tls_config.ca_file %s is not the node's --tls-ca %s nor a copy of it made by a one-shot `chronicle token create --cacert %s --cacert-out FILE`", ca, n.tlsFiles[0], n.tlsFiles[0])
			case !m.ReadOnly:
				fail("tls_config.ca_file %s: mount the volume read-only", ca)
			case copier != nil && prom.DependsOn[copier.service] != "service_completed_successfully":
				fail("tls_config.ca_file %s is copied by %s: depend on it with condition service_completed_successfully", ca, copier.service)
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
		fail("the node requires a token (--bootstrap-token-file): set authorization.credentials_file to a reader token a one-shot `chronicle token create --role reader --out FILE` makes, on a volume Prometheus mounts")
	case a.Credentials != "":
		fail("authorization.credentials: a secret in the repository; use credentials_file")
	case a.Type != "" && !strings.EqualFold(a.Type, "Bearer"):
		fail("authorization.type %s: the API takes Bearer tokens", a.Type)
	default:
		file := a.CredentialsFile
		admin, _, okAdmin := fileOn(node, n.tokenFile)
		got, m, ok := fileOn(prom, file)
		if !ok {
			fail("authorization.credentials_file %s is on no volume Prometheus mounts", file)
			break
		}
		gen, _ := producer(f, runs.tokens, got)
		run := creator(f, runs, got)
		switch {
		case okAdmin && got == admin:
			fail("authorization.credentials_file %s is the nodes' admin token (--bootstrap-token-file %s): /metrics needs only the reader role, "+
				"and whoever gets into Prometheus would hold the ledger; give it a reader token a one-shot `chronicle token create --role reader --out FILE` makes", file, n.tokenFile)
		case gen != nil:
			fail("authorization.credentials_file %s is written by %s (`chronicle token generate`), an admin token: give Prometheus a reader token a one-shot `chronicle token create --role reader --out FILE` makes", file, gen.service)
		case run == nil:
			fail("authorization.credentials_file %s is made by no one-shot `chronicle token create --role reader --out FILE` of this file", file)
		case run.role != "reader":
			fail("authorization.credentials_file %s is a token of role %s (made by %s): /metrics needs only reader; give Prometheus no more", file, run.role, run.service)
		case prom.DependsOn[run.service] != "service_completed_successfully":
			fail("authorization.credentials_file %s is made by %s: depend on it with condition service_completed_successfully", file, run.service)
		case !m.ReadOnly:
			fail("authorization.credentials_file %s: mount the volume read-only", file)
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
