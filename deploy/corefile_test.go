package deploy

// Every Corefile in deploy/ run by the CoreDNS of the image ($MINTTL_COREDNS).
// A Corefile made for a cluster is rewritten into a twin that runs on this
// machine (rewrite): listeners on loopback ports, forward to a loopback
// address, and the kubernetes plugin either kept whole and pointed at an API
// endpoint that refuses (CoreDNS then starts unsynced after 5 s: every
// plugin's setup has parsed its block, minttl's included), or replaced by the
// file plugin serving testdata/cluster.local.db with the block's ttl, to check
// the TTLs clients get. Every other line is kept as it is.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const linkerdSRV = "linkerd-policy.linkerd.svc.cluster.local."

// twin is where a rewritten Corefile listens and what its plugins reach.
type twin struct {
	dns, health, ready, metrics string // loopback ports
	forward                     string // host:port every forward goes to
	zoneFile                    string // file mode: the kubernetes plugin's replacement; "" keeps it
}

var refusing = "127.0.0.1:" + closedPort()

// closedPort is a loopback port nothing listens on.
func closedPort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}

// newTwin picks fresh loopback ports; forward goes to a closed port.
func newTwin(t *testing.T) twin {
	t.Helper()
	var ports []string
	for range 4 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close() // held until all four are picked
		ports = append(ports, fmt.Sprint(l.Addr().(*net.TCPAddr).Port))
	}
	return twin{dns: ports[0], health: ports[1], ready: ports[2], metrics: ports[3], forward: refusing}
}

var directive = regexp.MustCompile(`^(\s*)(\S+)(.*?)(\s*\{)?\s*$`)

// rewrite returns the twin of corefile and the kubernetes plugin's ttl (5 by
// default). The layout must be the usual one: a block opens at the end of its
// directive's line and closes on a line of its own.
func (w twin) rewrite(corefile string) (string, int, error) {
	var out []string
	ttl, depth, replaced := 5, 0, false // replaced: inside the kubernetes block the file plugin took over
	for n, line := range strings.Split(corefile, "\n") {
		trimmed := strings.TrimSpace(line)
		opens, closes := strings.HasSuffix(trimmed, "{"), trimmed == "}"
		if braces := strings.Count(trimmed, "{") + strings.Count(trimmed, "}"); braces > 1 || braces == 1 && !opens && !closes || replaced && opens {
			return "", 0, fmt.Errorf("line %d: a layout the rewrite does not know: %q", n+1, line)
		}
		if replaced {
			if f := strings.Fields(trimmed); len(f) == 2 && f[0] == "ttl" {
				fmt.Sscan(f[1], &ttl)
			}
			replaced = !closes
			continue
		}
		if m := directive.FindStringSubmatch(line); m != nil && !closes && !strings.HasPrefix(trimmed, "#") {
			switch depth {
			case 0: // a server block's keys: every zone on the twin's port
				var keys []string
				for _, key := range strings.Fields(m[2] + m[3]) {
					keys = append(keys, strings.Split(key, ":")[0]+":"+w.dns)
				}
				line = strings.Join(keys, " ") + " {\n    bind 127.0.0.1"
			case 1:
				if m[2] == "bind" {
					continue
				}
				if rewritten, replaces, ok := w.directive(m[1], m[2], strings.Fields(m[3]), m[4]); ok {
					line, replaced, opens = rewritten, replaces, opens && !replaces
				}
			}
		}
		if opens {
			depth++
		} else if closes {
			depth--
		}
		out = append(out, line)
	}
	twin := strings.Join(out, "\n")
	if strings.Contains(twin, "__PILLAR__") {
		return "", 0, fmt.Errorf("placeholders left:\n%s", twin)
	}
	return twin, ttl, nil
}

// directive rewrites one directive line of a server block, if it is one to
// rewrite (ok); replaced says the kubernetes plugin gave way to the file
// plugin, and its block is to be dropped.
func (w twin) directive(indent, name string, args []string, brace string) (line string, replaced, ok bool) {
	switch name {
	case "health", "ready", "prometheus":
		port := map[string]string{"health": w.health, "ready": w.ready, "prometheus": w.metrics}[name]
		return indent + name + " 127.0.0.1:" + port + brace, false, true
	case "forward":
		return indent + "forward " + args[0] + " " + w.forward + brace, false, true
	case "kubernetes":
		if w.zoneFile != "" {
			return indent + "file " + w.zoneFile + " " + args[0], brace != "", true
		}
		head, endpoint := indent+name+" "+strings.Join(args, " "), indent+"   endpoint http://"+refusing
		if brace != "" {
			return head + brace + "\n" + endpoint, false, true
		}
		return head + " {\n" + endpoint + "\n" + indent + "}", false, true
	}
	return "", false, false
}

// server is a running twin.
type server struct {
	twin
	log string
}

// start rewrites corefile, runs it and waits until its health endpoint answers.
func start(t *testing.T, corefile string, w twin) *server {
	t.Helper()
	binary := os.Getenv("MINTTL_COREDNS")
	if binary == "" {
		t.Fatal("MINTTL_COREDNS is not set: make deploy-test sets it to the image's CoreDNS (.bin/compat/VERSION/coredns)")
	}
	dir := t.TempDir()
	if w.zoneFile == "zone" {
		w.zoneFile = filepath.Join(dir, "cluster.local.db")
	}
	text, ttl, err := w.rewrite(corefile)
	if err != nil {
		t.Fatal(err)
	}
	if w.zoneFile != "" {
		zone, err := os.ReadFile(filepath.Join("..", "testdata", "cluster.local.db"))
		if err != nil {
			t.Fatal(err)
		}
		zone = []byte(strings.Replace(string(zone), "$TTL 5\n", fmt.Sprintf("$TTL %d\n", ttl), 1))
		if err := os.WriteFile(w.zoneFile, zone, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &server{twin: w, log: filepath.Join(dir, "coredns.log")}
	log, err := os.Create(s.log)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(binary, "-conf", path)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	// Serving: any reply to a query (SERVFAIL too, from an unsynced kubernetes plugin).
	q := new(dns.Msg)
	q.SetQuestion("cluster.local.", dns.TypeSOA)
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	deadline := time.After(20 * time.Second)
	for {
		if _, _, err := c.Exchange(q, "127.0.0.1:"+w.dns); err == nil {
			break
		}
		select {
		case <-exited:
			t.Fatalf("CoreDNS refused the Corefile (%v):\n%s\n%s", cmd.ProcessState, s.output(), text)
		case <-deadline:
			t.Fatalf("CoreDNS not serving after 20 s:\n%s\n%s", s.output(), text)
		case <-time.After(100 * time.Millisecond):
		}
	}
	resp, err := http.Get("http://127.0.0.1:" + w.health + "/health")
	if err != nil {
		t.Fatalf("health: %v\n%s", err, s.output())
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("health: %s\n%s", resp.Status, s.output())
	}
	return s
}

func (s *server) output() string {
	out, _ := os.ReadFile(s.log)
	return string(out)
}

// ask sends one query from the source address src over UDP or TCP.
func (s *server) ask(t *testing.T, src, network string, qtype uint16, name string) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second, Dialer: &net.Dialer{Timeout: 5 * time.Second}}
	if network == "tcp" {
		c.Dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	} else {
		c.Dialer.LocalAddr = &net.UDPAddr{IP: net.ParseIP(src)}
	}
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	m, _, err := c.ExchangeContext(context.Background(), q, "127.0.0.1:"+s.dns)
	if err != nil {
		t.Fatalf("%s %s from %s: %v\n%s", network, name, src, err, s.output())
	}
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) == 0 {
		t.Fatalf("%s %s from %s: %s", network, name, src, m)
	}
	return m
}

// deployed is every Corefile deploy/ ships, by where it comes from.
func deployed(t *testing.T) map[string]string {
	t.Helper()
	nodelocal := render(t, "nodelocaldns")
	return map[string]string{
		"kubeadm/stock":               render(t, "kubeadm/stock").corefile(t, "coredns"),
		"kubeadm":                     render(t, "kubeadm").corefile(t, "coredns"),
		"kubeadm-observe":             render(t, "kubeadm-observe").corefile(t, "coredns"),
		"nodelocaldns/node-local-dns": fillPillars(nodelocal.corefile(t, "node-local-dns")),
		"helm":                        helmCorefile(t),
	}
}

// fillPillars does what the operator's sed does (the rest is rewritten).
func fillPillars(corefile string) string {
	return strings.ReplaceAll(corefile, "__PILLAR__DNS__DOMAIN__", "cluster.local")
}

// TestCorefilesStart runs each Corefile whole, the kubernetes plugin pointed at
// an API that refuses: CoreDNS must accept every line and serve.
func TestCorefilesStart(t *testing.T) {
	for name, corefile := range deployed(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := start(t, corefile, newTwin(t))
			if !strings.Contains(s.output(), "CoreDNS-") {
				t.Errorf("no start banner:\n%s", s.output())
			}
		})
	}
}

// TestCorefilesRaise serves the Linkerd names through each Corefile with minttl
// (the kubernetes plugin replaced by the file plugin with its ttl): 20 clients
// over UDP and TCP must get TTLs from floor to floor + jitter, not all one, and a
// name outside minttl's zone must keep the kubernetes plugin's TTL.
func TestCorefilesRaise(t *testing.T) {
	corefiles := deployed(t)
	for _, name := range []string{"kubeadm", "helm"} {
		c := minttlOf(t, corefiles[name])
		if c.floor <= 30 || c.jitter < 2 {
			t.Errorf("%s: minttl floor %d s, jitter %d s: want the floor above the kubernetes plugin's ttl 30, a jitter that spreads", name, c.floor, c.jitter)
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w := newTwin(t)
			w.zoneFile = "zone"
			s := start(t, corefiles[name], w)
			ttls := map[uint32]bool{}
			for client := 10; client < 30; client++ {
				for _, network := range []string{"udp", "tcp"} {
					m := s.ask(t, fmt.Sprintf("127.0.0.%d", client), network, dns.TypeSRV, linkerdSRV)
					for _, rr := range append(m.Answer, m.Extra...) {
						if ttl := rr.Header().Ttl; rr.Header().Rrtype != dns.TypeOPT && (ttl < c.floor || ttl > c.floor+c.jitter) {
							t.Fatalf("client %d %s: TTL %d, want %d..%d:\n%s", client, network, ttl, c.floor, c.floor+c.jitter, m)
						}
					}
					ttls[m.Answer[0].Header().Ttl] = true
				}
			}
			if len(ttls) < 2 {
				t.Errorf("40 answers to 20 clients all carried one TTL: %v", ttls)
			}
			if ttl := s.ask(t, "127.0.0.40", "udp", dns.TypeA, "web.default.svc.cluster.local.").Answer[0].Header().Ttl; ttl > 30 {
				t.Errorf("a name outside minttl's zone got TTL %d, want the kubernetes plugin's 30 or less", ttl)
			}
		})
	}
}

// TestObserveChangesNothing: the rollout's first step hands every client the
// kubernetes plugin's ttl 30 for the Linkerd names, as kubeadm's own does.
func TestObserveChangesNothing(t *testing.T) {
	w := newTwin(t)
	w.zoneFile = "zone"
	s := start(t, deployed(t)["kubeadm-observe"], w)
	for client := 10; client < 20; client++ {
		for _, network := range []string{"udp", "tcp"} {
			m := s.ask(t, fmt.Sprintf("127.0.0.%d", client), network, dns.TypeSRV, linkerdSRV)
			for _, rr := range append(m.Answer, m.Extra...) {
				if ttl := rr.Header().Ttl; rr.Header().Rrtype != dns.TypeOPT && ttl != 30 {
					t.Fatalf("client %d %s: TTL %d, want the kubernetes plugin's 30:\n%s", client, network, ttl, m)
				}
			}
		}
	}
}

// TestNodeLocalKeepsJitter stacks the two tiers of deploy/nodelocaldns: pods
// ask node-local-dns, which forwards cluster.local to kube-dns over TCP. The
// TTL kube-dns's minttl hands out must reach the pods whole (floor..floor +
// jitter), where the stock cap of 30 s clips it.
func TestNodeLocalKeepsJitter(t *testing.T) {
	corefiles := deployed(t)
	kubeDNS := newTwin(t)
	kubeDNS.zoneFile = "zone"
	upstream := start(t, corefiles["kubeadm"], kubeDNS)
	m := minttlOf(t, corefiles["kubeadm"])
	shipped := fmt.Sprintf("success 9984 %d", m.floor+m.jitter)

	for _, c := range []struct {
		cap      string
		min, max uint32
	}{
		{fmt.Sprint(m.floor + m.jitter), m.floor, m.floor + m.jitter},
		{"30", 30, 30}, // upstream's nodelocaldns.yaml
	} {
		node := newTwin(t)
		node.forward = "127.0.0.1:" + upstream.dns
		corefile := strings.Replace(corefiles["nodelocaldns/node-local-dns"], shipped, "success 9984 "+c.cap, 1)
		nodeLocal := start(t, corefile, node)
		// The first answer is a miss in the node tier: the TTL kube-dns gave, capped.
		ttl := nodeLocal.ask(t, "127.0.0.50", "udp", dns.TypeSRV, linkerdSRV).Answer[0].Header().Ttl
		if ttl < c.min || ttl > c.max {
			t.Errorf("node tier with success cap %s handed pods TTL %d, want %d..%d", c.cap, ttl, c.min, c.max)
		}
	}
}

// minttlRange is the floor and the jitter, in seconds, of a Corefile's one
// minttl block, as its lines give them (floor Ns, jitter Ns).
type minttlRange struct{ floor, jitter uint32 }

func minttlOf(t *testing.T, corefile string) minttlRange {
	t.Helper()
	block := regexp.MustCompile(`(?s)\n\s*minttl [^\n]*\{(.*?)\}`).FindStringSubmatch(corefile)
	if block == nil {
		t.Fatalf("no minttl block in\n%s", corefile)
	}
	var r minttlRange
	for _, line := range strings.Split(block[1], "\n") {
		var property string
		var seconds uint32
		if n, _ := fmt.Sscanf(strings.TrimSpace(line), "%s %ds", &property, &seconds); n != 2 {
			continue
		}
		switch property {
		case "floor":
			r.floor = seconds
		case "jitter":
			r.jitter = seconds
		}
	}
	if r.floor == 0 || r.jitter == 0 {
		t.Fatalf("minttl block without floor and jitter in seconds:%s", block[1])
	}
	return r
}
