package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minttl/minttl/lab/internal/lab"
)

func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }

// runAll runs cfg's scenarios and fails unless each has a result.
func runAll(t *testing.T, cfg config) []result {
	t.Helper()
	results, err := run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(cfg.scenarios) {
		t.Fatalf("got %d results, want %d", len(results), len(cfg.scenarios))
	}
	return results
}

func shortConfig(t *testing.T) config {
	return config{
		coredns:  lab.CoreDNS,
		testdata: filepath.Join("..", "..", "testdata"),
		out:      t.TempDir(),
		clients:  []int{20},
		duration: 15 * time.Second,
		replicas: []int{2},
		probe:    2 * time.Second,
	}
}

// TestShortLab runs a small lab on two real CoreDNS replicas and checks the
// direction of the result: clients that start spread out are not asked back
// within the run by minttl, where cache pulls them back together, minttl sends fewer queries,
// and the replicas hand a client the same TTL at the same instant.
func TestShortLab(t *testing.T) {
	cfg := shortConfig(t)
	cfg.stagger = 5 * time.Second
	cfg.scenarios = []string{"cache", "minttl"}
	cfg.answers = true
	results := runAll(t, cfg)
	cache, minttl := results[0], results[1]
	for _, r := range results {
		t.Logf("%s: %d queries, %d failed, peak/mean %.1f, in the 2nd half %.1f, mean TTL %.1f, agreement %+v", r.Scenario, r.Queries, r.Failed, r.PeakToMean, r.PeakToMean2nd, r.MeanTTL, r.Agreement)
		if r.Failed > 0 {
			t.Errorf("%s: %d queries failed", r.Scenario, r.Failed)
		}
	}
	// Over the whole run both read the stagger's own bunching (a 15 s run
	// holds minttl's first queries and nothing else); the second half tells
	// them apart: cache's clients come back in step at each replica's item
	// expiry, minttl's hold their answers past the run's end.
	if minttl.PeakToMean2nd != 0 || cache.PeakToMean2nd < 1.5 {
		t.Errorf("peak/mean in the 2nd half: minttl %.2f, cache %.2f: want no minttl query and cache's in step", minttl.PeakToMean2nd, cache.PeakToMean2nd)
	}
	if minttl.Queries >= cache.Queries {
		t.Errorf("queries: minttl %d, cache %d: want minttl fewer", minttl.Queries, cache.Queries)
	}
	if minttl.TTL1 > 0 || minttl.MeanTTL < 30 {
		t.Errorf("minttl handed out TTL ≤ 1 in %.1f%% of answers, mean TTL %.1f", 100*minttl.TTL1, minttl.MeanTTL)
	}
	if a := minttl.Agreement; a.Probes == 0 || a.Differing > 0 {
		t.Errorf("minttl replicas: %d of %d probes answered with differing TTLs", a.Differing, a.Probes)
	}
	if minttl.StaleMax <= cache.StaleMax {
		t.Errorf("use past the zone's TTL: minttl %.0f s, cache %.0f s: the stamps do not reach the proxies", minttl.StaleMax, cache.StaleMax)
	}
	if err := write(cfg, results); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"table.md", "storm.svg", "summary.json"} {
		if st, err := os.Stat(filepath.Join(cfg.out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
	checkAnswers(t, filepath.Join(cfg.out, answersFile(minttl.Scenario)), minttl, cfg)
}

// checkAnswers checks the -answers file of minttl's run r: a row per query,
// every proxy's two names, each loop's queries in order and as far apart as
// the TTL before said, TTLs of minttl's, and the zone's data younger than
// the zone's TTL plus cache's 30 s.
func checkAnswers(t *testing.T, path string, r result, cfg config) {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(text)), "\n")
	if lines[0] != "proxy,name,sent_s,unix_s,replica,rtt_ms,ttl,age_s,failed" {
		t.Fatalf("%s: header %q", path, lines[0])
	}
	if len(lines)-1 != r.Queries {
		t.Errorf("%s: %d rows, %d queries", path, len(lines)-1, r.Queries)
	}
	type loop struct{ proxy, name string }
	last := map[loop][2]float64{} // sent, TTL
	for _, line := range lines[1:] {
		f := strings.Split(line, ",")
		if len(f) != 9 {
			t.Fatalf("%s: row %q", path, line)
		}
		num := func(i int) float64 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				t.Fatalf("%s: row %q, column %d: %v", path, line, i+1, err)
			}
			return v
		}
		sent, replica, ttl := num(2), int(num(4)), num(6)
		if f[8] == "0" {
			if age := num(7); ttl < 30 || ttl > 39 || age < 0 || age > zoneTTL+30 || replica < 0 || replica >= cfg.replicas[0] {
				t.Errorf("%s: row %q: want TTL 30-39, age 0-%d s, replica below %d", path, line, zoneTTL+30, cfg.replicas[0])
			}
		}
		k := loop{f[0], f[1]}
		if prev, ok := last[k]; ok && sent < prev[0]+prev[1] {
			t.Errorf("%s: %v asked at %.3f s, before its TTL of %.0f s from %.3f s ran out", path, k, sent, prev[1], prev[0])
		}
		last[k] = [2]float64{sent, ttl}
	}
	if want := cfg.clients[0] * len(names); len(last) != want {
		t.Errorf("%s: %d proxy names, want %d", path, len(last), want)
	}
}

// TestShortCluster runs a small NodeLocal DNSCache cluster (2 nodes × 10 pods,
// 2 kube-dns replicas behind the Service) and checks the direction of each
// tier: minttl in the node caches spreads the pods, minttl in kube-dns raises
// what the node caches get, but the node caches' 30 s cap keeps pods below it;
// minttl in both tiers, each with its own floor, starts and spreads the pods.
func TestShortCluster(t *testing.T) {
	cfg := shortConfig(t)
	cfg.nodes, cfg.clients = 2, []int{10}
	cfg.scenarios = []string{"nl_none", "nl_kubedns", "nl_node", "nl_kubedns_cap", "nl_both_fit"}
	results := runAll(t, cfg)
	none, kubeDNS, node, both := results[0], results[1], results[2], results[4]
	for _, r := range results {
		up := r.Upstream
		t.Logf("%s: pods %d queries (%d failed), mean TTL %.1f; node caches %d queries (%d failed), mean TTL %.1f",
			r.Scenario, r.Queries, r.Failed, r.MeanTTL, up.Queries, up.Failed, up.MeanTTL)
		if r.Failed > 0 || up.Failed > 0 {
			t.Errorf("%s: %d pod and %d node cache queries failed", r.Scenario, r.Failed, up.Failed)
		}
		if up.Queries == 0 {
			t.Errorf("%s: no answer from kube-dns passed the Service", r.Scenario)
		}
	}
	if node.TTL1 > 0 || node.MeanTTL < 30 || none.MeanTTL > zoneTTL {
		t.Errorf("pods' mean TTL: %.1f s with minttl in the node caches (TTL ≤ 1: %.1f %%), %.1f s without", node.MeanTTL, 100*node.TTL1, none.MeanTTL)
	}
	if both.TTL1 > 0 || both.MeanTTL < 31 {
		t.Errorf("minttl in both tiers: pods' mean TTL %.1f s (TTL ≤ 1: %.1f %%), want at least the node floor, 31 s", both.MeanTTL, 100*both.TTL1)
	}
	if node.Queries >= none.Queries {
		t.Errorf("pods' queries: %d with minttl in the node caches, %d without: want fewer", node.Queries, none.Queries)
	}
	// Two node caches ask kube-dns in the same second: their jitter may be 0
	// for all four (node, name) pairs, so the floor, not above it.
	if kubeDNS.Upstream.TTL1 > 0 || kubeDNS.Upstream.MeanTTL < 30 || kubeDNS.MeanTTL > nodeMaxTTL {
		t.Errorf("minttl in kube-dns: node caches got %.1f s on average, pods %.1f s: want at least minttl's floor (30 s) and at most the node cap (%d s)",
			kubeDNS.Upstream.MeanTTL, kubeDNS.MeanTTL, nodeMaxTTL)
	}
}

// TestShortPrometheus runs a herd and an even load side by side, each on 3
// CoreDNS replicas with minttl observing (kubeadm's shape, a TTL of 10 s),
// each scraped every second by a real Prometheus of its own as a cluster's
// Prometheus scrapes kube-dns (one server label, an instance and pod per
// replica), with deploy/'s rules, their windows scaled to 20 s: the herd
// factor must tell them apart, where the request rate cannot, and the alert
// fire for the herd alone. It runs once per scrape mode, all three at once
// (not as parallel subtests, which go test runs two at a time on 2 cores)
// with their herds 3 s apart, and shows what a rule that reads only the
// classic series gets in each.
func TestShortPrometheus(t *testing.T) {
	saved := scenarios
	defer func() { scenarios = saved }()
	scenarios = append(slices.Clone(scenarios),
		// Proxies started over 500 ms: 600 queries in one instant would
		// overflow the replicas' UDP receive buffers on loopback.
		scenario{name: "short_herd", corefile: "kubeadm.Corefile", zoneTTL: 10, deployed: true, vars: []string{"MODE", "observe_only"},
			stagger: 500 * time.Millisecond, describe: "a herd"},
		scenario{name: "short_even", corefile: "kubeadm.Corefile", zoneTTL: 10, deployed: true, vars: []string{"MODE", "observe_only"},
			stagger: 10 * time.Second, describe: "an even load"})
	modes := []lab.Histograms{lab.Classic, lab.NativeAndClassic, lab.Native}
	type outcome struct {
		cfg     config
		results []result
		err     error
		took    time.Duration
	}
	outcomes := make([]outcome, len(modes))
	var wg sync.WaitGroup
	for i, mode := range modes {
		cfg := shortConfig(t)
		cfg.clients, cfg.replicas, cfg.probe = []int{shortPrometheusProxies}, []int{3}, 0
		cfg.duration, cfg.prometheus, cfg.window, cfg.histograms = 90*time.Second, time.Second, 20*time.Second, mode
		cfg.rules = filepath.Join("..", "..", "deploy", "monitoring", "minttl-rules.yaml")
		cfg.scenarios = []string{"short_herd", "short_even"}
		outcomes[i].cfg = cfg
		wg.Go(func() {
			// The modes' herds 3 s apart, not on top of each other.
			time.Sleep(time.Duration(i) * 3 * time.Second)
			start := time.Now()
			outcomes[i].results, outcomes[i].err = run(context.Background(), cfg)
			outcomes[i].took = time.Since(start)
		})
	}
	wg.Wait()
	for i, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			o := outcomes[i]
			t.Logf("scraped %s: the run took %s", mode, o.took.Round(time.Second))
			if o.err != nil {
				t.Fatal(o.err)
			}
			if len(o.results) != 2 {
				t.Fatalf("got %d results, want 2", len(o.results))
			}
			checkShortPrometheus(t, o.cfg, o.results)
		})
	}
}

// shortPrometheusProxies per load: an even one sends 2 × 300 / 10 = 60
// queries a second, 20 to each of 3 replicas, picked at random per query;
// the busiest of the 20 seconds in the window then reads about 1.5 times the
// mean, where 60 proxies (4 a replica) read about 2 by chance alone.
const shortPrometheusProxies = 300

func checkShortPrometheus(t *testing.T, cfg config, results []result) {
	if results[0].Herd == nil || results[1].Herd == nil {
		t.Fatalf("results %+v: want Prometheus readings", results)
	}
	herd, even := results[0].Herd, results[1].Herd
	for _, r := range results {
		h := r.Herd
		var replicas []string
		for _, rep := range h.Replicas {
			replicas = append(replicas, fmt.Sprintf("%s %.2f (lab %.2f) at %.1f/s", rep.Pod, rep.HerdFactor, rep.Lab, rep.MeanSecond))
		}
		t.Logf("%s: server %q, herd factor %.2f (lab's fit %.2f; all replicas' seconds p99/mean %.2f, peak/mean %.2f), per replica %s; busiest seconds %.1f, zone %.1f/s, %.1f requests/s, alert fired %v at %.0f s; %d queries, %d failed; %d classic bucket series, %d native histograms, classic-only fit %.2f; pooled %.2f at a mean second of %.1f",
			r.Scenario, h.Server, h.HerdFactor, h.LabFit, h.LabP99, h.LabPeak, strings.Join(replicas, ", "), h.Busiest, h.ZoneRate, h.RequestRate,
			h.Fired.Fired, h.Fired.From, r.Queries, r.Failed, h.ClassicSeries, h.NativeSeries, h.ClassicOnlyFactor, h.PooledFactor, h.PooledMean)
		if r.Failed > 0 {
			t.Errorf("%s: %d queries failed", r.Scenario, r.Failed)
		}
		if h.Server != sharedServer {
			t.Errorf("%s: the rules read server %q, want every replica under %q", r.Scenario, h.Server, sharedServer)
		}
		if len(h.Replicas) != 3 {
			t.Fatalf("%s: %d replica readings, want 3", r.Scenario, len(h.Replicas))
		}
		for _, rep := range h.Replicas {
			if math.IsNaN(float64(rep.HerdFactor)) || math.IsNaN(float64(rep.MeanSecond)) {
				t.Errorf("%s: %s has no herd factor (%v) or mean second (%v) by the rules", r.Scenario, rep.Pod, rep.HerdFactor, rep.MeanSecond)
			}
		}
		if ratio := float64(h.HerdFactor / h.LabFit); !(ratio > 0.5 && ratio < 2) {
			t.Errorf("%s: herd factor %.2f from Prometheus, %.2f from the lab's own count of the same seconds", r.Scenario, h.HerdFactor, h.LabFit)
		}
		checkScrapeMode(t, cfg.histograms, r)
	}
	if !(herd.HerdFactor > herdThreshold && even.HerdFactor < 2) {
		t.Errorf("herd factor: herd %.2f, even load %.2f; want above the alert's %d and below 2", herd.HerdFactor, even.HerdFactor, herdThreshold)
	}
	if !herd.Fired.Fired || even.Fired.Fired {
		t.Errorf("MinttlDNSHerd fired for the herd: %v, for the even load: %v; want only the herd", herd.Fired.Fired, even.Fired.Fired)
	}
	if r := float64(herd.RequestRate / even.RequestRate); !(r > 0.8 && r < 1.25) {
		t.Errorf("request rates %.1f/s and %.1f/s: the herd and the even load send as many queries", herd.RequestRate, even.RequestRate)
	}
	if err := write(cfg, results); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"prometheus.md", "herd.svg"} {
		if st, err := os.Stat(filepath.Join(cfg.out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
}

// checkScrapeMode checks what Prometheus kept of the histogram in mode: the
// classic series where it scrapes them, native histograms where it scrapes
// those; a rule that reads only the classic series finds nothing where
// Prometheus keeps only native histograms, while deploy/'s rules read either.
func checkScrapeMode(t *testing.T, mode lab.Histograms, r result) {
	h := r.Herd
	classic, native := mode != lab.Native, mode != lab.Classic
	if (h.ClassicSeries > 0) != classic || (h.NativeSeries > 0) != native {
		t.Errorf("%s, scraped %s: %d classic bucket series, %d native histograms", r.Scenario, mode, h.ClassicSeries, h.NativeSeries)
	}
	if got := !math.IsNaN(float64(h.ClassicOnlyFactor)); got != classic {
		t.Errorf("%s, scraped %s: a rule reading the classic series alone reads %.2f", r.Scenario, mode, h.ClassicOnlyFactor)
	}
}

// TestHerdReadingJSON: a scenario without minttl has no herd factor (NaN),
// which summary.json writes as null.
func TestHerdReadingJSON(t *testing.T) {
	r := result{Herd: &herdReading{HerdFactor: reading(math.NaN()), Busiest: reading(math.Inf(1)), LabP99: 2.5, Factor5m: factorSeries{Times: []float64{15, 30}, Values: []reading{reading(math.NaN()), 3}}}}
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"herd_factor":null`, `"busiest_second":null`, `"lab_all_replicas_p99_to_mean":2.5`, `"herd_factor_5m":{"times_s":[15,30],"values":[null,3]}`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("%s lacks %s", js, want)
		}
	}
}

// TestCalmReadings: the first reading below the alert's 3 (the calm over a
// minute), and the time from which on they stay below it (the rule's).
func TestCalmReadings(t *testing.T) {
	times := []float64{0, 15, 30, 45, 60}
	nan := reading(math.NaN())
	for _, tc := range []struct {
		factors               []reading
		firstBelow, belowFrom float64
	}{
		{[]reading{nan, 30, 12, 2.5, 1.2}, 45, 45},
		{[]reading{nan, 1.2, 2.9, 1.1, 1.4}, 15, 0},
		{[]reading{nan, 30, 2, 3.3, 2}, 30, 60}, // chance lifts an even load's minute to 3
		{[]reading{nan, 30, 1, 1, 3}, 30, -1},
		{[]reading{nan, 30, 12, 5, 4}, -1, -1},
	} {
		f := factorSeries{Times: times, Values: tc.factors}
		if got := f.firstBelow(); got != tc.firstBelow {
			t.Errorf("firstBelow(%v) = %v, want %v", tc.factors, got, tc.firstBelow)
		}
		if got := f.belowFrom(); got != tc.belowFrom {
			t.Errorf("belowFrom(%v) = %v, want %v", tc.factors, got, tc.belowFrom)
		}
	}
}

// TestHerdThresholdIsDeploys: the lab's readings of MinttlDNSHerd and
// MinttlStaleAnswers are deploy/'s.
func TestHerdThresholdIsDeploys(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join("..", "..", "deploy", "monitoring", "minttl-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`herd_factor5m > (\d+)`).FindSubmatch(rules)
	if m == nil || string(m[1]) != fmt.Sprint(herdThreshold) {
		t.Errorf("deploy/'s MinttlDNSHerd threshold %q, the lab's %d", m, herdThreshold)
	}
	m = regexp.MustCompile(`zero_ttl_responses:ratio_rate5m > ([0-9.]+)`).FindSubmatch(rules)
	if m == nil || string(m[1]) != fmt.Sprint(staleThreshold) {
		t.Errorf("deploy/'s MinttlStaleAnswers threshold %q, the lab's %v", m, staleThreshold)
	}
	for _, rule := range []string{herdRule, busiestRule, zoneRateRule, staleRule, replicaHerdRule, replicaMeanRule, replicaP99Rule} {
		if !strings.Contains(string(rules), "record: "+rule+"\n") {
			t.Errorf("deploy/'s rules record no %s, which the lab reads", rule)
		}
	}
}

// TestPicker: proxies pick replicas evenly, or as the weights skew them.
func TestPicker(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		weights []int
		want    []float64 // shares
	}{
		{nil, []float64{0.25, 0.25, 0.25, 0.25}},
		{[]int{10, 1, 1, 1}, []float64{10.0 / 13, 1.0 / 13, 1.0 / 13, 1.0 / 13}},
		{[]int{0, 1, 0, 3}, []float64{0, 0.25, 0, 0.75}},
	} {
		pick := picker(4, tc.weights)
		got := make([]int, 4)
		const n = 100_000
		for range n {
			got[pick(rng)]++
		}
		for i, share := range tc.want {
			if d := float64(got[i])/n - share; math.Abs(d) > 0.01 {
				t.Errorf("weights %v: replica %d got %d of %d picks, want a share of %.3f", tc.weights, i, got[i], n, share)
			}
		}
	}
}

// TestUnitsPerScenario: a scenario's own proxy and replica counts (and its
// weights' replicas) replace the run's, and labels tell the units apart.
func TestUnitsPerScenario(t *testing.T) {
	cfg := config{clients: []int{200}, replicas: []int{2, 3}, scenarios: []string{"kubeadm_observe", "kubeadm_even_skewed", "minttl_serve_stale_few"}}
	us, err := units(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range us {
		got = append(got, fmt.Sprintf("%s %d %d", u.label, u.replicas, u.clients))
	}
	want := []string{"kubeadm_observe×2/200 2 200", "kubeadm_observe×3/200 3 200", "kubeadm_even_skewed×4/600 4 600",
		"minttl_serve_stale_few×1/2 1 2", "minttl_serve_stale_few×1/4 1 4", "minttl_serve_stale_few×1/7 1 7",
		"minttl_serve_stale_few×1/10 1 10", "minttl_serve_stale_few×1/15 1 15", "minttl_serve_stale_few×1/25 1 25", "minttl_serve_stale_few×1/40 1 40"}
	if !slices.Equal(got, want) {
		t.Errorf("units:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestLabFit: the lab fits its replicas' seconds as the rules do, sum p99 ×
// mean / sum mean², so a busy replica weighs most.
func TestLabFit(t *testing.T) {
	start := time.Unix(1000, 0)
	seconds := func(counts ...int) []int { return counts }
	bins := func(counts ...int) []int { // 100 ms bins: each second's count in its first bin
		bins := make([]int, len(counts)*10)
		for i, c := range counts {
			bins[i*10] = c
		}
		return bins
	}
	busy := seconds(10, 10, 10, 10, 10, 10, 10, 10, 10, 10) // p99 10, mean 10
	light := seconds(0, 0, 0, 0, 0, 0, 0, 0, 0, 10)         // p99 10, mean 1
	replicas := make([]replicaReading, 2)
	fit := labFit([][]int{busy, light}, start.Unix(), start, start.Add(10*time.Second), replicas)
	if want := (10.0*10 + 10*1) / (10.0*10 + 1*1); math.Abs(fit-want) > 1e-9 {
		t.Errorf("fit %v, want %v", fit, want)
	}
	if replicas[0].Lab != 1 || replicas[1].Lab != 10 {
		t.Errorf("per replica %v and %v, want 1 and 10", replicas[0].Lab, replicas[1].Lab)
	}
	if s := share(bins(1, 0, 2, 0, 0, 0, 0, 0, 0, 0), bins(busy...), start, start, start.Add(10*time.Second)); math.Abs(s-0.03) > 1e-9 {
		t.Errorf("share %v, want 0.03", s)
	}
}

// TestProxyAddr: the proxies' addresses, 250 a /24 from .1 as before, or as
// the pods of nodes of -pods-per-node pods, a /24 per node from .2 (the herd
// simulation's layout); units refuses layouts that do not fit.
func TestProxyAddr(t *testing.T) {
	for _, c := range []struct {
		index, proxy, perNode int
		want                  string
	}{
		{0, 0, 0, "127.10.0.1"}, {0, 249, 0, "127.10.0.250"}, {0, 250, 0, "127.10.1.1"}, {4, 1999, 0, "127.14.7.250"},
		{0, 0, 30, "127.10.0.2"}, {0, 29, 30, "127.10.0.31"}, {0, 30, 30, "127.10.1.2"}, {4, 999, 30, "127.14.33.11"},
	} {
		if got := proxyAddr(c.index, c.proxy, c.perNode).String(); got != c.want {
			t.Errorf("proxyAddr(%d, %d, %d) = %s, want %s", c.index, c.proxy, c.perNode, got, c.want)
		}
	}
	for _, c := range []struct {
		perNode, nodes, clients int
		fits                    bool
	}{{30, 0, 7500, true}, {30, 0, 7501, false}, {30, 2, 10, false}, {251, 0, 10, false}, {0, 0, 2000, true}} {
		cfg := config{scenarios: []string{"minttl"}, clients: []int{c.clients}, replicas: []int{1}, perNode: c.perNode, nodes: c.nodes}
		if c.nodes > 0 {
			cfg.scenarios = []string{"nl_node"}
		}
		if _, err := units(cfg); (err == nil) != c.fits {
			t.Errorf("-pods-per-node %d, -nodes %d, %d proxies: %v, want fits %v", c.perNode, c.nodes, c.clients, err, c.fits)
		}
	}
}

// TestWallClockSeconds: the tables read seconds as a server counts them. A
// herd's second that ends 20 ms before the next one starts is two seconds of
// 12 and 13 queries, not a second of 25 (what a window sliding over the 100
// ms bins read); and the calm is the end of the last second above twice the
// second half's mean second, here a burst 4 s after a start 900 ms into a
// second.
func TestWallClockSeconds(t *testing.T) {
	start := time.Unix(1000, 900*int64(time.Millisecond))
	duration := 60 * time.Second
	tl := newTally(start, duration, 1, 0)
	ask := func(at time.Time, n int) {
		for range n {
			tl.record(0, answer{at: at, ttl: 30, held: 30 * time.Second}, 5*time.Second)
		}
	}
	for s := int64(1001); s < 1060; s++ {
		n := 12
		if s == 1041 {
			n = 13
		}
		at := time.Unix(s, 980*int64(time.Millisecond)) // late in its second
		if s == 1041 {
			at = time.Unix(s, 0) // early in its second, 20 ms after 1040's
		}
		ask(at, n)
	}
	ask(time.Unix(1005, 500*int64(time.Millisecond)), 100)
	r := summarize(unit{scenario: scenario{name: "wall"}, replicas: 1, clients: 1}, tl, duration)
	if peak(r.Bins[400:], 10) < 25 {
		t.Fatalf("a 1 s window over the bins holds %d of seconds 1040 and 1041, want 25: the test's seconds are not where it meant them", peak(r.Bins[400:], 10))
	}
	mean := (12.0*28 + 13) / 29 // the whole seconds 1031 to 1059
	if want := 13 / mean; math.Abs(r.PeakToMean2nd-want) > 1e-9 {
		t.Errorf("peak/mean, 2nd half %.3f, want %.3f", r.PeakToMean2nd, want)
	}
	if r.Peak1s != 112 || r.Seconds[5] != 112 || r.FirstSecond != 1000 {
		t.Errorf("peak second %d, second 1005 %d (first %d), want 112 in 1005", r.Peak1s, r.Seconds[5], r.FirstSecond)
	}
	if want := 5.1; math.Abs(r.Calm-want) > 1e-9 {
		t.Errorf("calm after %.3f s, want %.1f (second 1005 ends 5.1 s after the start)", r.Calm, want)
	}
}
