package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/minttl/minttl/lab/internal/lab"
)

// scenarios maps a scenario's name to its Corefile under testdata/storm, and
// says what it is for the table.
var scenarios = []struct{ name, corefile, describe string }{
	{"cache", "cache.Corefile", "`cache 30` alone"},
	{"serve_stale", "serve_stale.Corefile", "`cache 30 { serve_stale }`"},
	{"keepttl", "keepttl.Corefile", "`cache 30 { keepttl }`"},
	{"rewrite", "rewrite.Corefile", "`rewrite ttl ... 30-` + `cache 30`"},
	{"minttl", "minttl.Corefile", "`minttl` + `cache 30`"},
	{"minttl_serve_stale", "minttl_serve_stale.Corefile", "`minttl` + `cache 30 { serve_stale }`"},
	{"unbound", "cache.Corefile", "unbound `cache-min-ttl: 30` → `cache 30`"},
	{"dnsmasq", "cache.Corefile", "dnsmasq `--min-cache-ttl=30` → `cache 30`"},
}

func allScenarios() []string {
	var names []string
	for _, s := range scenarios {
		names = append(names, s.name)
	}
	return names
}

// server is what the simulated proxies query: a CoreDNS, or a resolver in front of one.
type server struct {
	addr     string
	describe string
	procs    []*lab.Process
	dir      string
}

func (s *server) stop() {
	for _, p := range s.procs {
		p.Stop()
	}
	os.RemoveAll(s.dir)
}

// startScenario starts the scenario's processes and waits until they answer.
// A resolver that is not installed gives a nil server and no error.
func startScenario(ctx context.Context, cfg config, name string) (*server, error) {
	var corefile, describe string
	for _, s := range scenarios {
		if s.name == name {
			corefile, describe = s.corefile, s.describe
		}
	}
	if corefile == "" {
		return nil, fmt.Errorf("unknown scenario %q (have %s)", name, strings.Join(allScenarios(), ", "))
	}
	resolver := map[string]string{"unbound": "unbound", "dnsmasq": "dnsmasq"}[name]
	if resolver != "" {
		if _, err := exec.LookPath(resolver); err != nil {
			fmt.Printf("%-20s skipped: %s is not installed (apt-get install %s)\n", name, resolver, map[string]string{"unbound": "unbound", "dnsmasq": "dnsmasq-base"}[name])
			return nil, nil
		}
	}
	dir, err := os.MkdirTemp("", "stormlab-"+name+"-")
	if err != nil {
		return nil, err
	}
	srv := &server{describe: describe, dir: dir}
	backend, err := srv.startCoreDNS(ctx, cfg, corefile)
	if err == nil && resolver != "" {
		err = srv.startResolver(ctx, cfg, resolver, backend)
	}
	if err != nil {
		srv.stop()
		return nil, err
	}
	return srv, nil
}

func (s *server) startCoreDNS(ctx context.Context, cfg config, corefile string) (string, error) {
	port, err := lab.FreePort()
	if err != nil {
		return "", err
	}
	path, err := lab.WriteCorefile(filepath.Join(cfg.testdata, "storm", corefile), filepath.Join(cfg.testdata, "cluster.local.db"), s.dir, "PORT", port)
	if err != nil {
		return "", err
	}
	return port, s.start(ctx, "127.0.0.1:"+port, cfg.coredns, "-conf", path)
}

func (s *server) startResolver(ctx context.Context, cfg config, resolver, upstream string) error {
	port, err := lab.FreePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + port
	if resolver == "dnsmasq" {
		return s.start(ctx, addr, "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces",
			"--listen-address=127.0.0.1", "--port="+port, "--server=/cluster.local/127.0.0.1#"+upstream,
			"--min-cache-ttl=30", "--cache-size=10000", "--user=root", "--pid-file=", "--log-facility=-")
	}
	conf := filepath.Join(s.dir, "unbound.conf")
	if err := fill(filepath.Join(cfg.testdata, "storm", "unbound.conf"), conf, "UPSTREAM", upstream, "PORT", port, "DIR", s.dir); err != nil {
		return err
	}
	return s.start(ctx, addr, "unbound", "-d", "-c", conf)
}

// start runs a server process and waits until addr answers a query.
func (s *server) start(ctx context.Context, addr string, argv ...string) error {
	p, err := lab.Start(ctx, filepath.Join(s.dir, filepath.Base(argv[0])+".log"), nil, argv...)
	if err != nil {
		return err
	}
	s.procs = append(s.procs, p)
	s.addr = addr
	if err := lab.WaitForDNS(ctx, addr, p.Exited); err != nil {
		out, _ := os.ReadFile(p.Log)
		return fmt.Errorf("%s: %w:\n%s", argv[0], err, out)
	}
	return nil
}

// fill copies a template, replacing each placeholder with its value.
func fill(template, path string, pairs ...string) error {
	text, err := os.ReadFile(template)
	if err != nil {
		return err
	}
	return os.WriteFile(path, []byte(strings.NewReplacer(pairs...).Replace(string(text))), 0o600)
}
