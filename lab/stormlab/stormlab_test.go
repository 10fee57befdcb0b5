package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minttl/minttl/lab/internal/lab"
)

func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }

// TestShortLab runs a small lab on a real CoreDNS with minttl and checks
// the direction of the result: clients that start spread out stay spread with
// minttl, where cache pulls them back together, and minttl sends fewer queries.
func TestShortLab(t *testing.T) {
	cfg := config{
		coredns:   lab.CoreDNS,
		testdata:  filepath.Join("..", "..", "testdata"),
		out:       t.TempDir(),
		clients:   20,
		duration:  15 * time.Second,
		stagger:   5 * time.Second,
		scenarios: []string{"cache", "minttl"},
	}
	results, err := run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 {
		t.Fatalf("got %d results, want 2", len(results))
	}
	cache, minttl := results[0], results[1]
	for _, r := range results {
		t.Logf("%s: %d queries, %d failed, peak/mean %.1f, mean TTL %.1f", r.Scenario, r.Queries, r.Failed, r.PeakToMean, r.MeanTTL)
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
	if err := write(cfg, results); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"table.md", "storm.svg", "summary.json"} {
		if st, err := os.Stat(filepath.Join(cfg.out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
}
