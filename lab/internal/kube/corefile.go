package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/minttl/minttl"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/minttl/minttl/lab/internal/lab"
)

// Loopback is where a Corefile made for a cluster runs on this machine: its
// servers on loopback ports, the kubernetes plugin reading the lab's API
// server through a kubeconfig, forward sent to a port nothing listens on
// (nothing here is an upstream). deploy/corefile_test.go's twin does the same
// for deploy's offline tests, with an API endpoint that refuses instead.
type Loopback struct {
	DNS, Health, Ready, Metrics string // ports on 127.0.0.1
	Forward                     string // host:port
	Kubeconfig                  string
}

// NewLoopback picks free loopback ports for a Corefile reading kubeconfig.
func NewLoopback(kubeconfig, forward string) (Loopback, error) {
	var ports [4]string
	for i := range ports {
		port, err := lab.FreePort()
		if err != nil {
			return Loopback{}, err
		}
		ports[i] = port
	}
	return Loopback{DNS: ports[0], Health: ports[1], Ready: ports[2], Metrics: ports[3], Forward: forward, Kubeconfig: kubeconfig}, nil
}

// Addr is the DNS server's address.
func (l Loopback) Addr() string { return "127.0.0.1:" + l.DNS }

var serverKey = regexp.MustCompile(`^(\S+?)(:\d+)?$`)

// Rewrite changes what must change for corefile to run here and keeps every
// other line: each server block's keys move to the DNS port and bind
// 127.0.0.1; health, ready and prometheus listen on their loopback ports;
// forward goes to l.Forward; the kubernetes block gets kubeconfig. A block
// must open at the end of its directive's line, as in every Corefile deploy/
// ships.
func (l Loopback) Rewrite(corefile string) (string, error) {
	var out []string
	depth := 0
	for n, line := range strings.Split(corefile, "\n") {
		fields := strings.Fields(line)
		indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
		opens := len(fields) > 0 && fields[len(fields)-1] == "{"
		switch {
		case len(fields) == 0 || strings.HasPrefix(fields[0], "#"):
		case fields[0] == "}":
			depth--
		case depth == 0 && opens:
			var keys []string
			for _, key := range fields[:len(fields)-1] {
				keys = append(keys, serverKey.FindStringSubmatch(key)[1]+":"+l.DNS)
			}
			line = strings.Join(keys, " ") + " {\n" + indent + "    bind 127.0.0.1"
		case depth == 1:
			line = l.directive(indent, fields[0], opens, line)
		}
		if opens {
			depth++
		}
		if depth < 0 {
			return "", fmt.Errorf("line %d: a } too many", n+1)
		}
		out = append(out, line)
	}
	if depth != 0 {
		return "", fmt.Errorf("%d blocks left open", depth)
	}
	return strings.Join(out, "\n"), nil
}

func (l Loopback) directive(indent, name string, opens bool, line string) string {
	brace := map[bool]string{true: " {", false: ""}[opens]
	switch name {
	case "bind":
		return indent + "# " + strings.TrimSpace(line) + " (bound to 127.0.0.1 above)"
	case "health", "ready", "prometheus":
		port := map[string]string{"health": l.Health, "ready": l.Ready, "prometheus": l.Metrics}[name]
		return indent + name + " 127.0.0.1:" + port + brace
	case "forward":
		return indent + "forward " + strings.Fields(line)[1] + " " + l.Forward + brace
	case "kubernetes":
		kubeconfig := indent + "   kubeconfig " + l.Kubeconfig
		if opens {
			return line + "\n" + kubeconfig
		}
		return line + " {\n" + kubeconfig + "\n" + indent + "}"
	}
	return line
}

// RunCoreDNS rewrites corefile to run here, reading the API server through
// kubeconfig, writes it into dir and starts binary with it, waiting until it
// answers. Servers starting side by side can take a port between its check
// and its use, so a server that does not come up gets two more sets of ports.
func RunCoreDNS(ctx context.Context, binary, dir, corefile, kubeconfig string) (*lab.Process, Loopback, error) {
	var err error
	for range 3 {
		// forward's port is one nothing listens on: nothing here is an upstream.
		var l Loopback
		var closed string
		if closed, err = lab.FreePort(); err != nil {
			return nil, l, err
		}
		if l, err = NewLoopback(kubeconfig, "127.0.0.1:"+closed); err != nil {
			return nil, l, err
		}
		var p *lab.Process
		if p, err = runCoreDNS(ctx, binary, dir, corefile, l); err == nil || ctx.Err() != nil {
			return p, l, err
		}
	}
	return nil, Loopback{}, err
}

func runCoreDNS(ctx context.Context, binary, dir, corefile string, l Loopback) (*lab.Process, error) {
	text, err := l.Rewrite(corefile)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return nil, err
	}
	p, err := lab.Start(ctx, filepath.Join(dir, "coredns.log"), nil, binary, "-conf", path)
	if err != nil {
		return nil, err
	}
	if err := lab.WaitForDNS(ctx, l.Addr(), p.Exited); err != nil {
		p.Stop()
		log, _ := os.ReadFile(p.Log)
		return nil, fmt.Errorf("CoreDNS: %w\n%s\n%s", err, log, text)
	}
	return p, nil
}

// Minttl is the floor and jitter, in seconds, of the first minttl line of
// corefile, as the plugin's own setup reads it (defaults included): what the
// lab reports beside its figures instead of repeating them. Without minttl
// both are 0.
func Minttl(corefile string) (floor, jitter uint32, err error) {
	var block []string
	for _, line := range strings.Split(corefile, "\n") {
		f := strings.Fields(line)
		if len(block) == 0 && (len(f) == 0 || f[0] != "minttl") {
			continue
		}
		block = append(block, line)
		if len(f) > 0 && f[len(f)-1] != "{" && (len(block) == 1 || f[0] == "}") {
			break
		}
	}
	if len(block) == 0 {
		return 0, 0, nil
	}
	setup, err := caddy.DirectiveAction("dns", "minttl")
	if err != nil {
		return 0, 0, err
	}
	c := caddy.NewTestController("dns", strings.Join(block, "\n"))
	if err := setup(c); err != nil {
		return 0, 0, err
	}
	m, ok := dnsserver.GetConfig(c).Plugin[0](nil).(*minttl.MinTTL)
	if !ok {
		return 0, 0, errors.New("minttl's setup made no *minttl.MinTTL")
	}
	return m.Floor, m.Jitter, nil
}

// ManifestCorefile is the Corefile of the ConfigMap in a manifest file of one
// or more YAML documents (deploy/kubeadm/stock/coredns.yaml: kubeadm's).
func ManifestCorefile(path string) (string, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	for _, doc := range strings.Split(string(text), "\n---\n") {
		var cm corev1.ConfigMap
		if err := yaml.Unmarshal([]byte(doc), &cm); err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		if cm.Kind == "ConfigMap" && cm.Data["Corefile"] != "" {
			return cm.Data["Corefile"], nil
		}
	}
	return "", fmt.Errorf("%s: no ConfigMap with a Corefile", path)
}
