// Command stormlab reproduces the Linkerd DNS storm on the real ./coredns and
// measures it side by side for CoreDNS's cache, CoreDNS's own mitigations,
// minttl, and (where installed) unbound and dnsmasq; with kube-dns replicas
// behind a Service, and with a NodeLocal DNSCache tier. See README.md, "Storm
// lab".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/minttl/minttl/lab/internal/lab"
)

// config is what one lab run needs; flags fill it in.
type config struct {
	coredns    string        // the ./coredns binary
	baseline   string        // another build, for the minttl_baseline scenario
	testdata   string        // the testdata folder (zone file, scenario Corefiles)
	out        string        // results folder
	clients    []int         // simulated proxies per scenario (with nodes: pods per node); each scenario runs once per count
	duration   time.Duration // per scenario
	stagger    time.Duration // proxies start spread over this long; 0 is a lockstep rollout
	fixed      bool          // the fixed proxy: a 5 s client-side floor, no jitter
	replicas   []int         // kube-dns replicas; each scenario runs once per count
	nodes      int           // node caches (NodeLocal DNSCache); 0: none
	sequential bool          // one scenario after another, not side by side
	probe      time.Duration // how often the replicas' agreement is probed
	scenarios  []string
	progress   time.Duration
	prometheus time.Duration  // scrape and rule interval of each unit's Prometheus; 0: none
	histograms lab.Histograms // what Prometheus keeps of the histograms CoreDNS exposes both ways
	rules      string         // deploy/'s rule file
	window     time.Duration  // the rules' windows: 5m as shipped, scaled down for short runs
	kube       kubeLab        // the kube scenarios' control plane (kube.go)
	answers    bool           // write every proxy's answers (answers.go)
	perNode    int            // proxies as pods of nodes this many pods each (proxyAddr); 0: 250 a /24
}

func main() {
	cfg := config{}
	var scenarioList, replicaList, clientList string
	flag.StringVar(&cfg.coredns, "coredns", "./coredns", "CoreDNS binary built with minttl (make coredns)")
	flag.StringVar(&cfg.baseline, "baseline", "", "another CoreDNS build with minttl (e.g. of an older commit) for the minttl_baseline scenario")
	flag.StringVar(&cfg.testdata, "testdata", "testdata", "folder with cluster.local.db and storm/")
	flag.StringVar(&cfg.out, "out", "results/storm", "folder for table.md, storm.svg and summary.json")
	flag.StringVar(&clientList, "clients", "200", "simulated proxies per scenario, each from its own 127.x.y.z address (with -nodes: pods per node); a list runs each scenario at each count")
	flag.DurationVar(&cfg.duration, "duration", 5*time.Minute, "how long each scenario runs")
	flag.DurationVar(&cfg.stagger, "stagger", 0, "spread the proxies' start over this long (0: all start together)")
	flag.BoolVar(&cfg.fixed, "fixed-proxy", false, "behave like linkerd2-proxy after its 2025 fix (5 s client-side floor)")
	flag.StringVar(&replicaList, "replicas", "1", "kube-dns replicas behind the Service; a list (1,3) runs each scenario at each count")
	flag.BoolVar(&cfg.sequential, "sequential", false, "run the scenarios one after another instead of side by side (for TTL-0 storms, which take every CPU, and for the lab's own CPU per scenario)")
	flag.IntVar(&cfg.nodes, "nodes", 0, "node caches (NodeLocal DNSCache) in front of kube-dns, -clients pods each; 0: proxies ask kube-dns")
	flag.DurationVar(&cfg.probe, "probe", 5*time.Second, "how often every replica is asked the same question at once (0: never)")
	flag.StringVar(&scenarioList, "scenarios", "", "comma-separated scenarios (default: the single-tier ones, or with -nodes the node-local ones); minttl_jPCT is minttl with jitter PCT %")
	flag.DurationVar(&cfg.progress, "progress", 30*time.Second, "interval of the progress lines")
	flag.DurationVar(&cfg.prometheus, "prometheus", 0, "give each scenario a Prometheus that scrapes its kube-dns replicas this often, all under one server label, with -rules, and report what it saw (prometheus.md, stale.md, herd.svg); 0: none")
	histograms := flag.String("histograms", "classic", "what Prometheus scrapes of the histograms CoreDNS exposes both ways: classic, native_and_classic or native")
	flag.StringVar(&cfg.rules, "rules", "deploy/monitoring/minttl-rules.yaml", "the Prometheus rules to load")
	flag.DurationVar(&cfg.window, "rule-window", ruleWindow, "scale the rules' windows (5m herd factor, 10m alert) to this herd-factor window")
	flag.BoolVar(&cfg.answers, "answers", false, "write every proxy's answers, one row per query, to answers-SCENARIO.csv in -out (a few thousand rows for a minttl scenario of 200 proxies, hundreds of thousands for a storm)")
	flag.IntVar(&cfg.perNode, "pods-per-node", 0, "give the proxies the addresses of pods of nodes this many pods each, a /24 per node from .2 (the herd simulation's layout; 0: 250 a /24 from .1)")
	kubeFlags(&cfg.kube)
	flag.Parse()
	var err error
	if cfg.replicas, err = counts(replicaList); err != nil {
		fmt.Fprintln(os.Stderr, "stormlab: -replicas:", err)
		os.Exit(2)
	}
	if cfg.clients, err = counts(clientList); err != nil {
		fmt.Fprintln(os.Stderr, "stormlab: -clients:", err)
		os.Exit(2)
	}
	if cfg.histograms, err = histogramsMode(*histograms); err != nil {
		fmt.Fprintln(os.Stderr, "stormlab: -histograms:", err)
		os.Exit(2)
	}
	cfg.scenarios = strings.Split(scenarioList, ",")
	if scenarioList == "" {
		cfg.scenarios = defaultScenarios(cfg.nodes > 0)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	results, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stormlab:", err)
		os.Exit(1)
	}
	if err := write(cfg, results); err != nil {
		fmt.Fprintln(os.Stderr, "stormlab:", err)
		os.Exit(1)
	}
	fmt.Println(table(cfg, results))
	fmt.Println("wrote", filepath.Join(cfg.out, "table.md"), "and", filepath.Join(cfg.out, "storm.svg"))
}

// histogramsMode is the scrape mode named name.
func histogramsMode(name string) (lab.Histograms, error) {
	for _, h := range []lab.Histograms{lab.Classic, lab.NativeAndClassic, lab.Native} {
		if h.String() == name {
			return h, nil
		}
	}
	return 0, fmt.Errorf("%q is none of classic, native_and_classic, native", name)
}

func counts(list string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a count", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// units is every scenario at every replica and client count, each with its
// own index, so that units running side by side never share a client address.
func units(cfg config) ([]unit, error) {
	var out []unit
	for _, name := range cfg.scenarios {
		s, err := findScenario(name)
		if err != nil {
			return nil, err
		}
		if s.baseline && cfg.baseline == "" {
			return nil, fmt.Errorf("scenario %s needs -baseline", name)
		}
		if (s.node != "") != (cfg.nodes > 0) {
			return nil, fmt.Errorf("scenario %s: node-local scenarios (nl_*) need -nodes, the others run without", name)
		}
		clients, replicas := cfg.clients, cfg.replicas
		if s.clients != nil {
			clients = s.clients
		}
		if s.replicas != nil {
			replicas = s.replicas
		}
		if s.weights != nil {
			replicas = []int{len(s.weights)}
		}
		if cfg.perNode != 0 && (cfg.nodes > 0 || cfg.perNode < 1 || cfg.perNode > 250) {
			return nil, fmt.Errorf("-pods-per-node %d: want 1 to 250, and no -nodes (node caches have their own pods)", cfg.perNode)
		}
		for _, n := range clients {
			if max(cfg.nodes, 1)*n > 250*250 || cfg.nodes > 250 || (cfg.nodes > 0 && n > 249) || (cfg.perNode > 0 && n > 250*cfg.perNode) {
				return nil, fmt.Errorf("%d nodes × %d clients do not fit the client addresses", cfg.nodes, n)
			}
			for _, r := range replicas {
				if s.resolver != "" && r > 1 {
					continue // one resolver in front of one CoreDNS
				}
				out = append(out, unit{scenario: s, replicas: r, clients: n, index: len(out)})
			}
		}
	}
	if len(out) > 240 {
		return nil, fmt.Errorf("%d scenarios: at most 240 fit the client addresses", len(out))
	}
	labelUnits(out)
	return out, nil
}

// labelUnits names each unit by its scenario, with ×replicas where the run
// has more than one replica count and /proxies where it has more than one
// proxy count.
func labelUnits(us []unit) {
	replicas, clients := map[int]bool{}, map[int]bool{}
	for _, u := range us {
		replicas[u.replicas], clients[u.clients] = true, true
	}
	for i, u := range us {
		us[i].label = u.name
		if len(replicas) > 1 {
			us[i].label = fmt.Sprintf("%s×%d", us[i].label, u.replicas)
		}
		if len(clients) > 1 {
			us[i].label = fmt.Sprintf("%s/%d", us[i].label, u.clients)
		}
	}
}

// run starts every unit at once (or, with cfg.sequential, one after
// another), waits for all of them, and stops every process it started.
func run(ctx context.Context, cfg config) ([]result, error) {
	us, err := units(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopKube, err := startKube(ctx, &cfg, us)
	if err != nil {
		return nil, err
	}
	defer stopKube()
	results := make([]result, len(us))
	errs := make([]error, len(us))
	runOne := func(i int) {
		lab0 := selfCPU()
		results[i], errs[i] = runUnit(ctx, cfg, us[i])
		if errs[i] != nil {
			errs[i] = fmt.Errorf("%s: %w", us[i].name, errs[i])
			cancel()
		}
		if cfg.sequential {
			results[i].LabCPU = (selfCPU() - lab0).Seconds()
		}
	}
	if cfg.sequential {
		for i := range us {
			if ctx.Err() == nil {
				runOne(i)
			}
		}
	} else {
		var wg sync.WaitGroup
		for i := range us {
			wg.Go(func() { runOne(i) })
		}
		wg.Wait()
	}
	if err := firstError(errs); err != nil {
		return nil, err
	}
	var kept []result
	for _, r := range results {
		if r.Scenario != "" { // empty: a resolver that is not installed
			kept = append(kept, r)
		}
	}
	return kept, ctx.Err()
}

// firstError prefers the error that stopped the run to the cancellations it
// caused.
func firstError(errs []error) error {
	var first error
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// selfCPU is the lab process's own CPU time so far.
func selfCPU() time.Duration {
	t, _ := lab.CPUTime(os.Getpid())
	return t
}

func runUnit(ctx context.Context, cfg config, u unit) (result, error) {
	pods := u.clients * max(cfg.nodes, 1)
	c, err := startCluster(ctx, cfg, u)
	if err != nil || c == nil {
		return result{}, err
	}
	defer c.stop()
	label := u.label
	fmt.Printf("%-24s started: %d kube-dns on %s\n", label, len(c.replicas), strings.Join(c.replicas, " "))
	var prom *lab.Prometheus
	if cfg.prometheus > 0 {
		p, dir, err := startPrometheus(ctx, cfg)
		defer os.RemoveAll(dir)
		if err != nil {
			return result{}, err
		}
		defer p.Stop()
		if err := scrape(p, c); err != nil {
			return result{}, err
		}
		prom = p
	}
	f := fleet{clients: pods, source: func(p int) net.IP { return proxyAddr(u.index, p, cfg.perNode) }, targets: func(int) []string { return c.replicas },
		weights: u.weights, sticky: u.sticky, validity: u.validity()}
	direct := true // the proxies ask the replicas themselves
	switch {
	case c.front != nil:
		f.targets, direct = func(int) []string { return []string{c.frontAt} }, false
	case cfg.nodes > 0:
		direct = false
		f.source = func(p int) net.IP { return podAddr(u.index, p/u.clients, p%u.clients) }
		f.targets = func(p int) []string { return c.nodeAt[p/u.clients : p/u.clients+1] }
	}
	replicas := 0
	if direct {
		replicas = len(c.replicas)
	}
	t1 := newTally(time.Now(), cfg.duration, pods*len(names), replicas)
	t1.keep = cfg.answers
	if c.churn != nil {
		f.churn = c.churn.open(t1.start, cfg.duration, len(t1.loops))
	}
	t2 := newTally(t1.start, cfg.duration, max(cfg.nodes, 1), 0)
	if c.service != nil {
		c.service.tally.Store(t2)
	}
	agreed := make(chan agreement, 1)
	go func() { agreed <- probe(ctx, probeAddr(u.index), c.replicas, cfg.probe, t1.start.Add(cfg.duration)) }()
	if u.stagger > 0 {
		cfg.stagger = u.stagger
	}
	if u.switchAt > 0 {
		go c.switchAt(ctx, t1.start.Add(u.switchAt), u.switchVars)
	}
	if u.failsAt > 0 && c.zone != nil {
		go func() {
			if sleepUntil(ctx, t1.start.Add(u.failure(cfg.duration))) {
				c.zone.silent.Store(true)
			}
		}()
	}
	simulate(ctx, cfg, label, f, t1)
	ag := <-agreed
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	res := summarize(u, t1, cfg.duration)
	res.Scenario, res.Agreement = label, ag
	if cfg.answers {
		res.answers = t1
	}
	if prom != nil {
		herd := &herdReading{start: t1.start, end: t1.start.Add(cfg.duration)}
		// Prometheus scrapes the replicas until the run's end and a little
		// past it, as its last rule evaluations need them: proxies that are
		// done early (their next query would fall after the end) must not
		// take the replicas away.
		if !sleepUntil(ctx, herd.end.Add(2*cfg.prometheus+time.Second)) {
			return result{}, ctx.Err()
		}
		if err := readHerd(ctx, prom, cfg, u, c, &res, herd); err != nil {
			return result{}, err
		}
		res.Herd = herd
	}
	if c.churn != nil {
		res.Churn = c.churn.result(ctx, cfg.kube.churn)
	}
	res.CPU = c.cpu(c.kubeDNS...).Seconds()
	for _, p := range c.kubeDNS {
		res.CPUEach = append(res.CPUEach, c.cpu(p).Seconds())
	}
	if c.front != nil {
		res.CPUFront = c.cpu(c.front).Seconds()
	}
	if cfg.nodes > 0 {
		res.CPUFront = c.cpu(c.nodes...).Seconds()
		upstream := summarize(u, t2, cfg.duration)
		res.Upstream = &upstream
	}
	return res, nil
}

// probeAddr is the agreement probe's address, outside the proxies' and nodes'.
func probeAddr(index int) net.IP { return net.IPv4(127, byte(10+index), 255, 254) }
