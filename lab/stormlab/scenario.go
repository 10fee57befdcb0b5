package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/minttl/minttl/lab/internal/kube"
	"github.com/minttl/minttl/lab/internal/lab"
)

// scenario is one setup the proxies storm: kube-dns replicas with a Corefile
// from testdata/storm, maybe a resolver in front of them, maybe node caches.
type scenario struct {
	name, describe string
	corefile       string   // the kube-dns replicas' Corefile
	vars           []string // its placeholders and values, besides PORT and UPSTREAM
	resolver       string   // unbound or dnsmasq in front of one CoreDNS
	zoneTTL        uint32   // the zone's TTL; 0 is the kubernetes plugin's 5 s
	delay          time.Duration
	node           string        // node-local scenarios: the node caches' Corefile
	nodeVars       []string      // its placeholders and values, besides PORT, SERVICE and NODE
	baseline       bool          // kube-dns runs -baseline, another build of CoreDNS
	deployed       bool          // FLOOR and JITTER are deploy/kubeadm's
	herdOnly       bool          // for make storm-herd, not make storm
	stagger        time.Duration // this scenario's proxies start spread over this long
	switchAt       time.Duration // this long after the start, the Corefiles change:
	switchVars     []string      // these placeholders get these values, the reload plugin picks them up
	failsAt        float64       // from this share of the run on, the zone answers nothing (0: never)
	// Where set, the scenario runs at these proxy and replica counts instead
	// of -clients and -replicas; weights (one per replica) fix the replicas
	// and skew the proxies' choice among them.
	clients, replicas []int
	weights           []int
	sticky            bool // each proxy sends all its queries to one replica, picked by the weights

	// kube scenarios (kube.go): kube-dns runs this Corefile, reading the lab's API server.
	kube corefileSource
}

var scenarios = []scenario{
	{name: "cache", corefile: "cache.Corefile", describe: "`cache 30` alone"},
	{name: "serve_stale", corefile: "serve_stale.Corefile", describe: "`cache 30 { serve_stale }`"},
	{name: "keepttl", corefile: "keepttl.Corefile", describe: "`cache 30 { keepttl }`"},
	{name: "rewrite", corefile: "rewrite.Corefile", describe: "`rewrite ttl ... 30-` + `cache 30`"},
	{name: "minttl", corefile: "minttl.Corefile", describe: "`minttl` + `cache 30`"},
	{name: "minttl_serve_stale", corefile: "minttl_serve_stale.Corefile", describe: "`minttl` + `cache 30 { serve_stale }`"},
	{name: "minttl_baseline", corefile: "minttl.Corefile", baseline: true, describe: "`minttl` + `cache 30`, the -baseline build"},
	{name: "unbound", corefile: "cache.Corefile", resolver: "unbound", describe: "unbound `cache-min-ttl: 30` → `cache 30`"},
	{name: "dnsmasq", corefile: "cache.Corefile", resolver: "dnsmasq", describe: "dnsmasq `--min-cache-ttl=30` → `cache 30`"},

	// What Prometheus sees (make storm-herd): minttl measuring without
	// raising, and kubeadm's Corefile shape (ttl 30, cluster.local not
	// cached), observing, raising as deploy/kubeadm does, and switched from
	// the one to the other mid-run as the rollout does.
	{herdOnly: true, name: "observe", corefile: "observe.Corefile", describe: "`minttl { observe_only }` + `cache 30`"},
	{herdOnly: true, name: "kubeadm_observe", corefile: "kubeadm.Corefile", zoneTTL: 30, deployed: true, vars: []string{"MODE", "observe_only"},
		describe: "kubeadm's shape (ttl 30, no cache), minttl `observe_only`"},
	{herdOnly: true, name: "kubeadm_minttl", corefile: "kubeadm.Corefile", zoneTTL: 30, deployed: true, vars: []string{"MODE", ""},
		describe: "kubeadm's shape, minttl as deploy/kubeadm"},
	{herdOnly: true, name: "kubeadm_switch", corefile: "kubeadm.Corefile", zoneTTL: 30, deployed: true, vars: []string{"MODE", "observe_only"},
		switchAt: 16 * time.Minute, switchVars: []string{"MODE", ""},
		describe: "kubeadm's shape, minttl `observe_only`, raising from 16 min on"},
	// Even loads over 4 replicas (issue 23): 600 proxies started over 40 s,
	// which minttl in observe_only does not spread further, sent to the
	// replicas evenly and 10:1:1:1 (topology-aware routing, IPVS source
	// hashing and NodeLocal DNSCache's TCP skew replicas so), per query or
	// with each proxy pinned to one replica; and the skewed load with minttl
	// raising.
	{herdOnly: true, name: "kubeadm_even", corefile: "kubeadm.Corefile", zoneTTL: 30, deployed: true, vars: []string{"MODE", "observe_only"},
		stagger: 40 * time.Second, clients: []int{600}, weights: []int{1, 1, 1, 1},
		describe: "kubeadm's shape, minttl `observe_only`, proxies started over 40 s, replicas 1:1:1:1"},
	{herdOnly: true, name: "kubeadm_even_skewed", corefile: "kubeadm.Corefile", zoneTTL: 30, deployed: true, vars: []string{"MODE", "observe_only"},
		stagger: 40 * time.Second, clients: []int{600}, weights: []int{10, 1, 1, 1},
		describe: "kubeadm's shape, minttl `observe_only`, proxies started over 40 s, replicas 10:1:1:1"},
	{herdOnly: true, name: "kubeadm_even_sticky", corefile: "kubeadm.Corefile", zoneTTL: 30, deployed: true, vars: []string{"MODE", "observe_only"},
		stagger: 40 * time.Second, clients: []int{600}, weights: []int{10, 1, 1, 1}, sticky: true,
		describe: "kubeadm's shape, minttl `observe_only`, proxies started over 40 s, each proxy pinned to a replica, 10:1:1:1"},
	{herdOnly: true, name: "kubeadm_minttl_skewed", corefile: "kubeadm.Corefile", zoneTTL: 30, deployed: true, vars: []string{"MODE", ""},
		stagger: 40 * time.Second, clients: []int{600}, weights: []int{10, 1, 1, 1},
		describe: "kubeadm's shape, minttl as deploy/kubeadm, proxies started over 40 s, replicas 10:1:1:1"},

	// MinttlStaleAnswers's input (make storm-stale): serve_stale in front of
	// a healthy zone (minttl_serve_stale, TTL 5), of one with TTL 30, of one
	// that stops answering a third into the run, and a healthy one asked
	// by a few proxies, where every expiry's first answer is most answers.
	{herdOnly: true, name: "minttl_serve_stale_ttl30", corefile: "minttl_serve_stale.Corefile", zoneTTL: 30,
		describe: "`minttl` + `cache 30 { serve_stale }`, zone TTL 30"},
	// The same with deploy/kubeadm's floor above the zone's TTL (31 s + 9
	// s): the answers a refreshed item hands out at 30 are raised too.
	{herdOnly: true, name: "minttl_serve_stale_ttl30_floor31", corefile: "minttl_serve_stale_tuned.Corefile", zoneTTL: 30, deployed: true,
		describe: "`minttl` (floor 31 s, jitter 9 s, as deploy/kubeadm) + `cache 30 { serve_stale }`, zone TTL 30"},
	{herdOnly: true, name: "minttl_serve_stale_failing", corefile: "minttl_serve_stale.Corefile", failsAt: 1.0 / 3,
		describe: "`minttl` + `cache 30 { serve_stale }`, the zone silent from a third of the run on"},
	{herdOnly: true, name: "minttl_serve_stale_few", corefile: "minttl_serve_stale.Corefile", clients: []int{2, 4, 7, 10, 15, 25, 40}, replicas: []int{1},
		describe: "`minttl` + `cache 30 { serve_stale }`, a few proxies"},

	// The seed's storm: kubeadm's TTL 30, serve_stale, and an upstream that
	// takes a second, so every item's expiry opens a second of TTL-0 answers.
	{name: "serve_stale_slow", corefile: "serve_stale.Corefile", zoneTTL: 30, delay: time.Second,
		describe: "`cache 30 { serve_stale }`, TTL 30, upstream 1 s slow"},
	{name: "minttl_serve_stale_slow", corefile: "minttl_serve_stale.Corefile", zoneTTL: 30, delay: time.Second,
		describe: "`minttl` + `cache 30 { serve_stale }`, TTL 30, upstream 1 s slow"},

	// NodeLocal DNSCache: a node cache on every node in front of kube-dns.
	{name: "nl_none", corefile: "cache.Corefile", node: "node.Corefile", describe: "no minttl"},
	{name: "nl_kubedns", corefile: "minttl.Corefile", node: "node.Corefile", describe: "minttl in kube-dns (30 s + 30 %)"},
	{name: "nl_kubedns_cap", corefile: "minttl.Corefile", node: "node_cap.Corefile", nodeVars: []string{"NODE_CAP", "39"},
		describe: "minttl in kube-dns (30 s + 30 %), node cap raised to 39 s"},
	{name: "nl_kubedns_fit", corefile: "minttl_tuned.Corefile", vars: []string{"FLOOR", "25s", "JITTER", "5s"}, node: "node.Corefile",
		describe: "minttl in kube-dns (25 s + 5 s)"},
	{name: "nl_node", corefile: "cache.Corefile", node: "node_minttl.Corefile", describe: "minttl in the node caches (30 s + 30 %)"},
	{name: "nl_both", corefile: "minttl.Corefile", node: "node_minttl.Corefile", describe: "minttl in both (30 s + 30 %)"},
	{name: "nl_both_fit", corefile: "minttl_tuned.Corefile", vars: []string{"FLOOR", "25s", "JITTER", "5s"},
		node: "node_minttl_tuned.Corefile", nodeVars: []string{"NODE_FLOOR", "31s", "NODE_JITTER", "30%"},
		describe: "minttl in kube-dns (25 s + 5 s) and in the node caches (31 s + 30 %)"},
}

// defaultScenarios are those make storm runs without -scenarios.
func defaultScenarios(nodeLocal bool) []string {
	var out []string
	for _, s := range scenarios {
		if (s.node != "") == nodeLocal && s.delay == 0 && !s.baseline && s.kube == nil && !s.herdOnly {
			out = append(out, s.name)
		}
	}
	return out
}

func allScenarios() []string {
	var out []string
	for _, s := range scenarios {
		out = append(out, s.name)
	}
	return out
}

// findScenario returns the named scenario; minttl_jPCT is minttl with a
// jitter of PCT % of the default floor.
func findScenario(name string) (scenario, error) {
	for _, s := range scenarios {
		if s.name == name {
			return s, nil
		}
	}
	if pct, ok := strings.CutPrefix(name, "minttl_j"); ok {
		return scenario{name: name, corefile: "minttl_tuned.Corefile", vars: []string{"FLOOR", "30s", "JITTER", pct + "%"},
			describe: "`minttl` floor 30 s, jitter " + pct + " %"}, nil
	}
	return scenario{}, fmt.Errorf("unknown scenario %q (have %s, minttl_jPCT)", name, strings.Join(allScenarios(), ", "))
}

// failure is when, into a run of duration, the zone stops answering.
func (s scenario) failure(duration time.Duration) time.Duration {
	return time.Duration(s.failsAt * float64(duration)).Round(time.Second)
}

func (s scenario) validity() time.Duration {
	if s.zoneTTL == 0 {
		return zoneTTL * time.Second
	}
	return time.Duration(s.zoneTTL) * time.Second
}

// zoneTTL is the TTL of the kubernetes plugin, the lab zone's default: an
// answer used longer than this after the zone made it is stale.
const zoneTTL = 5

// cluster is a running scenario: the zone, the kube-dns replicas, a resolver
// in front of them or node caches with the Service between.
type cluster struct {
	dir      string
	zone     *zone
	kubeDNS  []*lab.Process
	replicas []string // their addresses
	front    *lab.Process
	frontAt  string
	nodes    []*lab.Process
	nodeAt   []string
	service  *service
	churn    *churnWatch // kube scenarios
	cpu0     map[*lab.Process]time.Duration
	metrics  []string  // the kube-dns replicas' /metrics addresses
	written  []written // the kube-dns replicas' Corefiles
}

// written is a Corefile the lab filled in, to fill in again.
type written struct {
	template, zonefile, dir string
	pairs                   []string
}

// unit is one scenario at one replica count and one client count, with the
// index that picks its client addresses.
type unit struct {
	scenario
	replicas, clients int
	index             int
	label             string // the scenario's name, with the replica and proxy counts where a run has several
}

// startCluster starts a unit's processes and waits until they all answer. A
// resolver that is not installed gives a nil cluster and no error.
func startCluster(ctx context.Context, cfg config, u unit) (*cluster, error) {
	if u.resolver != "" {
		if _, err := exec.LookPath(u.resolver); err != nil {
			fmt.Printf("%-24s skipped: %s is not installed (apt-get install %s)\n", u.name, u.resolver, map[string]string{"unbound": "unbound", "dnsmasq": "dnsmasq-base"}[u.resolver])
			return nil, nil
		}
	}
	dir, err := os.MkdirTemp("", "stormlab-"+u.name+"-")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, cpu0: map[*lab.Process]time.Duration{}}
	if err := c.start(ctx, cfg, u); err != nil {
		c.stop()
		return nil, err
	}
	for _, p := range c.all() {
		c.cpu0[p], _ = lab.CPUTime(p.Cmd.Process.Pid)
	}
	return c, nil
}

func (c *cluster) start(ctx context.Context, cfg config, u unit) error {
	if u.kube != nil {
		return c.startKubeDNS(ctx, cfg, u)
	}
	z, err := startZone(filepath.Join(cfg.testdata, "cluster.local.db"), uint32(u.validity()/time.Second), u.delay)
	if err != nil {
		return err
	}
	c.zone = z
	binary := cfg.coredns
	if u.baseline {
		binary = cfg.baseline
	}
	vars := append([]string{"UPSTREAM", z.addr}, u.vars...)
	if u.deployed {
		floor, jitter, err := deployedMinttl(cfg.testdata)
		if err != nil {
			return err
		}
		vars = append(vars, "FLOOR", floor, "JITTER", jitter)
	}
	for r := range u.replicas {
		addr, p, err := c.coreDNS(ctx, binary, cfg.testdata, fmt.Sprintf("kube-dns-%d", r), u.corefile, vars...)
		if err != nil {
			return err
		}
		c.kubeDNS, c.replicas = append(c.kubeDNS, p), append(c.replicas, addr)
	}
	switch {
	case u.resolver != "":
		return c.startResolver(ctx, cfg, u.resolver, c.replicas[0])
	case u.node != "":
		return c.startNodes(ctx, cfg, u)
	}
	return nil
}

// startNodes starts the Service and one node cache per node, each forwarding
// to the Service from its node's address.
func (c *cluster) startNodes(ctx context.Context, cfg config, u unit) error {
	svc, err := startService(ctx, c.replicas, func(ip net.IP) int { return nodeOf(u.index, ip) }, u.validity())
	if err != nil {
		return err
	}
	c.service = svc
	for n := range cfg.nodes {
		addr, p, err := c.coreDNS(ctx, cfg.coredns, cfg.testdata, fmt.Sprintf("node-%d", n), u.node,
			append([]string{"SERVICE", svc.addr(), "NODE", nodeAddr(u.index, n).String()}, u.nodeVars...)...)
		if err != nil {
			return err
		}
		c.nodes, c.nodeAt = append(c.nodes, p), append(c.nodeAt, addr)
	}
	return nil
}

// Pod p of node n is 127.(10+index).n.(p+1); the node itself is .250 there.
func podAddr(index, n, p int) net.IP { return net.IPv4(127, byte(10+index), byte(n), byte(p+1)) }
func nodeAddr(index, n int) net.IP   { return net.IPv4(127, byte(10+index), byte(n), 250) }

// nodeOf is the node whose address ip is, or -1.
func nodeOf(index int, ip net.IP) int {
	v4 := ip.To4()
	if v4 == nil || v4[1] != byte(10+index) || v4[3] != 250 {
		return -1
	}
	return int(v4[2])
}

// startingServer is held from picking a server's ports until it listens on
// them (a CoreDNS, a Prometheus). CoreDNS binds with SO_REUSEPORT: two
// servers given the same free port both start, and the kernel splits the
// queries between them; a Prometheus whose port a CoreDNS took first fails.
// So servers of units starting side by side never pick ports at once.
var startingServer sync.Mutex

// coreDNS starts binary with a Corefile from testdata/storm on a free port.
// Another process can still take a port between its check and its use, so a
// server that does not come up gets two more ports to try.
func (c *cluster) coreDNS(ctx context.Context, binary, testdata, name, corefile string, pairs ...string) (string, *lab.Process, error) {
	dir := filepath.Join(c.dir, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", nil, err
	}
	startingServer.Lock()
	defer startingServer.Unlock()
	var err error
	for range 3 {
		var port, path string
		if port, err = lab.FreePort(); err != nil {
			return "", nil, err
		}
		w := written{filepath.Join(testdata, "storm", corefile), filepath.Join(testdata, "cluster.local.db"), dir, append([]string{"PORT", port}, pairs...)}
		metrics := ""
		if text, _ := os.ReadFile(w.template); strings.Contains(string(text), "METRICS") {
			if metrics, err = lab.FreePort(); err != nil {
				return "", nil, err
			}
			w.pairs = append(w.pairs, "METRICS", metrics)
		}
		if path, err = lab.WriteCorefile(w.template, w.zonefile, dir, w.pairs...); err != nil {
			return "", nil, err
		}
		addr := "127.0.0.1:" + port
		var p *lab.Process
		if p, err = c.run(ctx, dir, addr, binary, "-conf", path); err == nil && metrics != "" {
			if err = lab.WaitForTCP(ctx, "127.0.0.1:"+metrics, p.Exited); err != nil {
				p.Stop()
			}
		}
		if err == nil || ctx.Err() != nil {
			if err == nil && strings.HasPrefix(name, "kube-dns") {
				c.written = append(c.written, w)
				if metrics != "" {
					c.metrics = append(c.metrics, "127.0.0.1:"+metrics)
				}
			}
			return addr, p, err
		}
	}
	return "", nil, err
}

func (c *cluster) startResolver(ctx context.Context, cfg config, resolver, upstream string) error {
	port, err := lab.FreePort()
	if err != nil {
		return err
	}
	c.frontAt = "127.0.0.1:" + port
	upstreamPort := upstream[strings.LastIndexByte(upstream, ':')+1:]
	if resolver == "dnsmasq" {
		c.front, err = c.run(ctx, c.dir, c.frontAt, "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces",
			"--listen-address=127.0.0.1", "--port="+port, "--server=/cluster.local/127.0.0.1#"+upstreamPort,
			"--min-cache-ttl=30", "--cache-size=10000", "--user=root", "--pid-file=", "--log-facility=-")
		return err
	}
	conf := filepath.Join(c.dir, "unbound.conf")
	if err := fill(filepath.Join(cfg.testdata, "storm", "unbound.conf"), conf, "UPSTREAM", upstreamPort, "PORT", port, "DIR", c.dir); err != nil {
		return err
	}
	c.front, err = c.run(ctx, c.dir, c.frontAt, "unbound", "-d", "-c", conf)
	return err
}

// run starts a server process and waits until addr answers a query.
func (c *cluster) run(ctx context.Context, dir, addr string, argv ...string) (*lab.Process, error) {
	p, err := lab.Start(ctx, filepath.Join(dir, filepath.Base(argv[0])+".log"), nil, argv...)
	if err != nil {
		return nil, err
	}
	if err := lab.WaitForDNS(ctx, addr, p.Exited); err != nil {
		p.Stop()
		out, _ := os.ReadFile(p.Log)
		return nil, fmt.Errorf("%s: %w:\n%s", argv[0], err, out)
	}
	return p, nil
}

func (c *cluster) all() []*lab.Process {
	all := append(append([]*lab.Process{}, c.kubeDNS...), c.nodes...)
	if c.front != nil {
		all = append(all, c.front)
	}
	return all
}

// cpu is the CPU time the processes used since the cluster started answering.
func (c *cluster) cpu(ps ...*lab.Process) time.Duration {
	total := time.Duration(0)
	for _, p := range ps {
		if t, err := lab.CPUTime(p.Cmd.Process.Pid); err == nil {
			total += t - c.cpu0[p]
		}
	}
	return total
}

func (c *cluster) stop() {
	for _, p := range c.all() {
		p.Stop()
	}
	if c.service != nil {
		c.service.stop()
	}
	if c.zone != nil {
		c.zone.stop()
	}
	os.RemoveAll(c.dir)
}

// fill copies a template, replacing each placeholder with its value.
func fill(template, path string, pairs ...string) error {
	text, err := os.ReadFile(template)
	if err != nil {
		return err
	}
	return os.WriteFile(path, []byte(lab.Placeholders(pairs...).Replace(string(text))), 0o600)
}

// switchAt fills in the kube-dns replicas' Corefiles again at the instant at,
// with vars replacing their values (the first of a placeholder's values wins), as an operator edits the ConfigMap; the
// reload plugin in the Corefile picks the change up.
func (c *cluster) switchAt(ctx context.Context, at time.Time, vars []string) {
	if !sleepUntil(ctx, at) {
		return
	}
	for _, w := range c.written {
		if _, err := lab.WriteCorefile(w.template, w.zonefile, w.dir, append(slices.Clone(vars), w.pairs...)...); err != nil {
			fmt.Fprintln(os.Stderr, "stormlab: switching", w.dir, err)
		}
	}
}

// deployedMinttl is the floor and the jitter deploy/kubeadm's Corefile gives
// minttl, as minttl's setup reads them.
func deployedMinttl(testdata string) (floor, jitter string, err error) {
	text, err := os.ReadFile(filepath.Join(testdata, "..", "deploy", "kubeadm", "Corefile"))
	if err != nil {
		return "", "", err
	}
	f, j, err := kube.Minttl(string(text))
	return fmt.Sprintf("%ds", f), fmt.Sprintf("%ds", j), err
}
