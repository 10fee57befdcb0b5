package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
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
// direction of the result: clients that start spread out stay spread with
// minttl, where cache pulls them back together, minttl sends fewer queries,
// and the replicas hand a client the same TTL at the same instant.
func TestShortLab(t *testing.T) {
	cfg := shortConfig(t)
	cfg.stagger = 5 * time.Second
	cfg.scenarios = []string{"cache", "minttl"}
	results := runAll(t, cfg)
	cache, minttl := results[0], results[1]
	for _, r := range results {
		t.Logf("%s: %d queries, %d failed, peak/mean %.1f, mean TTL %.1f, agreement %+v", r.Scenario, r.Queries, r.Failed, r.PeakToMean, r.MeanTTL, r.Agreement)
		if r.Failed > 0 {
			t.Errorf("%s: %d queries failed", r.Scenario, r.Failed)
		}
	}
	if minttl.PeakToMean >= cache.PeakToMean {
		t.Errorf("peak/mean: minttl %.2f, cache %.2f: want minttl lower", minttl.PeakToMean, cache.PeakToMean)
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

// TestShortPrometheus runs a herd and an even load side by side, each on its
// own CoreDNS with minttl observing (kubeadm's shape, a TTL of 10 s), and a
// real Prometheus scraping both every second with deploy/'s rules, their
// windows scaled to 20 s: the herd factor must tell them apart, where the
// request rate cannot, and the alert fire for the herd alone.
func TestShortPrometheus(t *testing.T) {
	defer func(saved []scenario) { scenarios = saved }(scenarios)
	scenarios = append(scenarios,
		scenario{name: "short_herd", corefile: "kubeadm.Corefile", zoneTTL: 10, deployed: true, vars: []string{"MODE", "observe_only"}, describe: "a herd"},
		scenario{name: "short_even", corefile: "kubeadm.Corefile", zoneTTL: 10, deployed: true, vars: []string{"MODE", "observe_only"}, stagger: 10 * time.Second, describe: "an even load"})
	cfg := shortConfig(t)
	cfg.clients, cfg.replicas, cfg.probe = []int{60}, []int{1}, 0
	cfg.duration, cfg.prometheus, cfg.window = 90*time.Second, time.Second, 20*time.Second
	cfg.rules = filepath.Join("..", "..", "deploy", "monitoring", "minttl-rules.yaml")
	cfg.scenarios = []string{"short_herd", "short_even"}
	results := runAll(t, cfg)
	if results[0].Herd == nil || results[1].Herd == nil {
		t.Fatalf("results %+v: want Prometheus readings", results)
	}
	herd, even := results[0].Herd, results[1].Herd
	for _, r := range results {
		h := r.Herd
		t.Logf("%s: herd factor %.2f (lab p99/mean %.2f, peak/mean %.2f), mean second %.1f, %.1f requests/s, alert fired %v at %.0f s; %d queries, %d failed",
			r.Scenario, h.HerdFactor, h.LabP99, h.LabPeak, h.MeanSecond, h.RequestRate, h.Fired, h.FiredAt, r.Queries, r.Failed)
		if r.Failed > 0 {
			t.Errorf("%s: %d queries failed", r.Scenario, r.Failed)
		}
		if ratio := float64(h.HerdFactor / h.LabP99); !(ratio > 0.5 && ratio < 2) {
			t.Errorf("%s: herd factor %.2f from Prometheus, %.2f from the lab's own count of the same seconds", r.Scenario, h.HerdFactor, h.LabP99)
		}
	}
	if !(herd.HerdFactor > herdThreshold && even.HerdFactor < 2) {
		t.Errorf("herd factor: herd %.2f, even load %.2f; want above the alert's %d and below 2", herd.HerdFactor, even.HerdFactor, herdThreshold)
	}
	if !herd.Fired || even.Fired {
		t.Errorf("MinttlDNSHerd fired for the herd: %v, for the even load: %v; want only the herd", herd.Fired, even.Fired)
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

// TestHerdReadingJSON: a scenario without minttl has no herd factor (NaN),
// which summary.json writes as null.
func TestHerdReadingJSON(t *testing.T) {
	r := result{Herd: &herdReading{HerdFactor: reading(math.NaN()), MeanSecond: reading(math.Inf(1)), LabP99: 2.5, Factor5m: factorSeries{Times: []float64{15, 30}, Values: []reading{reading(math.NaN()), 3}}}}
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"herd_factor":null`, `"mean_second":null`, `"lab_p99_to_mean":2.5`, `"herd_factor_5m":{"times_s":[15,30],"values":[null,3]}`} {
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

// TestHerdThresholdIsDeploys: the lab's reading of MinttlDNSHerd is deploy/'s.
func TestHerdThresholdIsDeploys(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join("..", "..", "deploy", "monitoring", "minttl-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`herd_factor5m > (\d+)`).FindSubmatch(rules)
	if m == nil || string(m[1]) != fmt.Sprint(herdThreshold) {
		t.Errorf("deploy/'s MinttlDNSHerd threshold %q, the lab's %d", m, herdThreshold)
	}
}
