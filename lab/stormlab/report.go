package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/minttl/minttl/lab/internal/lab"
)

// zoneTTL is the TTL of the SRV records in testdata/cluster.local.db, the
// kubernetes plugin's default: an answer used longer than this is stale.
const zoneTTL = 5

const bin = 100 * time.Millisecond

// result is one scenario's numbers.
type result struct {
	describe      string
	Scenario      string  `json:"scenario"`
	Queries       int     `json:"queries"`
	Failed        int     `json:"failed"`
	Per5Min       float64 `json:"queries_per_5min"`
	MeanQPS       float64 `json:"mean_qps"`
	Peak1s        int     `json:"peak_1s"`
	Peak100ms     int     `json:"peak_100ms"`
	PeakToMean    float64 `json:"peak_to_mean_1s"`
	PeakToMean2nd float64 `json:"peak_to_mean_1s_second_half"`
	TTL0          float64 `json:"share_ttl_0"`
	TTL1          float64 `json:"share_ttl_le_1"`
	MeanTTL       float64 `json:"mean_ttl"`
	MinQueries    int     `json:"theoretical_min_queries"`
	MaxStale      int     `json:"max_seconds_past_zone_ttl"`
	Bins          []int   `json:"queries_per_100ms"`
}

func summarize(name, describe string, cfg config, queries []query) result {
	r := result{describe: describe, Scenario: name, Queries: len(queries)}
	r.Bins = make([]int, int(cfg.duration/bin)+1)
	var ttlSum float64
	answered := 0
	for _, q := range queries {
		r.Bins[min(int(q.at/bin), len(r.Bins)-1)]++
		if q.failed {
			r.Failed++
			continue
		}
		answered++
		ttlSum += float64(q.ttl)
		if q.ttl == 0 {
			r.TTL0++
		}
		if q.ttl <= 1 {
			r.TTL1++
		}
		r.MaxStale = max(r.MaxStale, int(heldFor(cfg, q.ttl)/time.Second)-zoneTTL)
	}
	if answered > 0 {
		r.TTL0, r.TTL1, r.MeanTTL = r.TTL0/float64(answered), r.TTL1/float64(answered), ttlSum/float64(answered)
	}
	seconds := cfg.duration.Seconds()
	r.Per5Min = float64(r.Queries) * 300 / seconds
	r.MeanQPS = float64(r.Queries) / seconds
	r.Peak1s, r.Peak100ms = peak(r.Bins, 10), peak(r.Bins, 1)
	r.PeakToMean = ratio(r.Bins, 0)
	r.PeakToMean2nd = ratio(r.Bins, len(r.Bins)/2)
	r.MinQueries = minimumQueries(cfg, queries)
	return r
}

// heldFor is how long a proxy kept using an answer with this TTL.
func heldFor(cfg config, ttl uint32) time.Duration {
	d := time.Duration(ttl) * time.Second
	if cfg.fixed {
		d = max(d, fixedProxyFloor)
	}
	return d
}

// peak is the most queries in any window of w consecutive bins.
func peak(bins []int, w int) int {
	best, sum := 0, 0
	for i, n := range bins {
		sum += n
		if i >= w {
			sum -= bins[i-w]
		}
		best = max(best, sum)
	}
	return best
}

// ratio is the peak 1-second query count over the mean 1-second count, from bin `from` on.
func ratio(bins []int, from int) float64 {
	tail := bins[from:]
	total := 0
	for _, n := range tail {
		total += n
	}
	if total == 0 {
		return 0
	}
	mean := float64(total) / (float64(len(tail)) * bin.Seconds())
	return float64(peak(tail, int(time.Second/bin))) / mean
}

// minimumQueries is the fewest queries the TTLs handed out allow: each proxy
// using every answer for its full TTL (a TTL-0 answer for one second), from its
// first query to the end of the run.
func minimumQueries(cfg config, queries []query) int {
	type loop struct {
		first    time.Duration
		held     float64
		answered int
	}
	loops := map[int]*loop{}
	for _, q := range queries {
		l := loops[q.loop]
		if l == nil {
			l = &loop{first: q.at}
			loops[q.loop] = l
		}
		if !q.failed {
			l.held += math.Max(heldFor(cfg, q.ttl).Seconds(), 1)
			l.answered++
		}
	}
	total := 0
	for _, l := range loops {
		if l.answered > 0 {
			total += int(math.Ceil((cfg.duration - l.first).Seconds() / (l.held / float64(l.answered))))
		}
	}
	return total
}

func table(cfg config, results []result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d proxies × %d names, %s per scenario, start %s, %s proxies; %s, %d cores.\n\n",
		cfg.clients, len(names), cfg.duration, startKind(cfg), proxyKind(cfg), lab.CPUModel(), runtime.NumCPU())
	b.WriteString("| scenario | queries | per 5 min | min. for TTLs given | mean q/s | peak q/s (1 s) | peak / 100 ms | peak/mean (1 s) | peak/mean, 2nd half | TTL 0 | TTL ≤ 1 | mean TTL | longest use past TTL 5 s |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %d | %.0f | %d | %.1f | %d | %d | %.1f× | %.1f× | %.1f %% | %.1f %% | %.1f s | %d s |\n",
			r.describe, r.Queries, r.Per5Min, r.MinQueries, r.MeanQPS, r.Peak1s, r.Peak100ms, r.PeakToMean, r.PeakToMean2nd,
			100*r.TTL0, 100*r.TTL1, r.MeanTTL, r.MaxStale)
	}
	return b.String()
}

func startKind(cfg config) string {
	if cfg.stagger == 0 {
		return "lockstep"
	}
	return "staggered over " + cfg.stagger.String()
}

func proxyKind(cfg config) string {
	if cfg.fixed {
		return "fixed (5 s floor)"
	}
	return "pre-fix (TTL-driven)"
}

func write(cfg config, results []result) error {
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	md := "Made by `stormlab " + strings.Join(os.Args[1:], " ") + "` (make storm).\n\n" + table(cfg, results)
	if err := os.WriteFile(filepath.Join(cfg.out, "table.md"), []byte(md), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cfg.out, "summary.json"), js, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(cfg.out, "storm.svg"), []byte(svg(cfg, results)), 0o644)
}

// svg draws queries per 100 ms over time, one lane per scenario, all lanes on
// one logarithmic scale, so that a storm looks like one and calm stays visible.
func svg(cfg config, results []result) string {
	const width, lane, left, top = 1000.0, 90.0, 250.0, 30.0
	scale := 1
	for _, r := range results {
		scale = max(scale, r.Peak100ms)
	}
	var b strings.Builder
	height := top + lane*float64(len(results)) + 30
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", left+width+20, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="18" font-size="14">Queries per 100 ms, %d proxies × 2 SRV names, %s start (one log scale: %d at the top)</text>`+"\n",
		left, cfg.clients, startKind(cfg), scale)
	for i, r := range results {
		y0 := top + lane*float64(i+1) - 10
		fmt.Fprintf(&b, `<text x="5" y="%.0f">%s</text>`+"\n", y0-lane/2+10, escape(r.Scenario))
		fmt.Fprintf(&b, `<text x="5" y="%.0f" fill="#555">peak %d/100 ms, %d queries</text>`+"\n", y0-lane/2+26, r.Peak100ms, r.Queries)
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#ccc"/>`+"\n", left, y0, left+width, y0)
		var pts strings.Builder
		for j, n := range r.Bins {
			x := left + width*float64(j)/float64(len(r.Bins))
			fmt.Fprintf(&pts, "%.1f,%.1f ", x, y0-(lane-20)*math.Log1p(float64(n))/math.Log1p(float64(scale)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="#c0392b" stroke-width="1" points="%s"/>`+"\n", pts.String())
	}
	for s := 0.0; s <= cfg.duration.Seconds(); s += 60 {
		x := left + width*s/cfg.duration.Seconds()
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#555">%.0f s</text>`+"\n", x, height-8, s)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
