package main

import (
	"path/filepath"
	"testing"
	"time"
)

// TestShortKube runs two kube scenarios briefly on a real control plane,
// EKS's Corefile without and with minttl, while a rolling update replaces a
// pod every 2 s: proxies get the kubernetes plugin's answers (none fails),
// minttl raises them to its floor, and the proxies see the new pods. How long
// they took is reported, never asserted: this machine's clock is not the
// test's to judge.
func TestShortKube(t *testing.T) {
	cfg := shortConfig(t)
	cfg.duration, cfg.clients, cfg.replicas, cfg.probe = 20*time.Second, []int{10}, []int{1}, 0
	cfg.scenarios = []string{"kube_eks", "kube_eks_minttl"}
	cfg.kube = kubeLab{bin: filepath.Join("..", "..", ".bin", "controlplane"), deploy: filepath.Join("..", "..", "deploy"), churn: 2 * time.Second}
	results := runAll(t, cfg)
	plain, minttl := results[0], results[1]
	for _, r := range results {
		c := r.Churn
		if c == nil {
			t.Fatalf("%s: no churn measured", r.Scenario)
		}
		t.Logf("%s: %d queries (%d failed), mean TTL %.1f; %d events, %d samples, %d missed, p50 %.1f s, max %.1f s",
			r.Scenario, r.Queries, r.Failed, r.MeanTTL, c.Events, c.Samples, c.Missed, c.P50, c.Max)
		if r.Failed > 0 || r.Queries == 0 {
			t.Errorf("%s: %d of %d queries failed", r.Scenario, r.Failed, r.Queries)
		}
		if c.Events == 0 {
			t.Errorf("%s: the rolling update wrote no event in the window", r.Scenario)
		}
	}
	if plain.Churn.Samples == 0 {
		t.Errorf("%s: no proxy ever got an answer with a new pod", plain.Scenario)
	}
	if c := minttl.Churn; c.Floor == 0 || minttl.TTL1 > 0 || minttl.MeanTTL < float64(c.Floor) || minttl.MeanTTL > float64(c.Floor+c.Jitter) {
		t.Errorf("%s: mean TTL %.1f (TTL ≤ 1: %.1f %%), want minttl's %d..%d", minttl.Scenario, minttl.MeanTTL, 100*minttl.TTL1, c.Floor, c.Floor+c.Jitter)
	}
	if plain.MeanTTL > float64(plain.Churn.ZoneTTL) {
		t.Errorf("%s: mean TTL %.1f above the kubernetes plugin's %d", plain.Scenario, plain.MeanTTL, plain.Churn.ZoneTTL)
	}
}
