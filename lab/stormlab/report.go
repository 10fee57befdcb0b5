package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/minttl/minttl/lab/internal/lab"
)

// result is one scenario's numbers (for a node-local scenario, the pods'
// side, with the node caches' side in Upstream).
type result struct {
	describe      string
	Scenario      string  `json:"scenario"`
	Replicas      int     `json:"replicas"`
	Clients       int     `json:"clients"`
	Queries       int     `json:"queries"`
	Failed        int     `json:"failed"`
	Per5Min       float64 `json:"queries_per_5min"`
	MeanQPS       float64 `json:"mean_qps"`
	Peak1s        int     `json:"peak_1s"`
	PeakToMean    float64 `json:"peak_to_mean_1s"`
	PeakToMean2nd float64 `json:"peak_to_mean_1s_second_half"`
	// PeakToMean2ndSliding is what the tables read before they counted
	// wall-clock seconds: the busiest window of 1 s sliding over the 100 ms
	// bins, over the mean second, in the second half (report.go says why it
	// misleads).
	PeakToMean2ndSliding float64 `json:"peak_to_mean_1s_second_half_sliding"`
	// PeakToMeanLast is the same over the run's last 5 minutes (steadyWindow),
	// the steady state of a long run (0: a run too short to have one).
	PeakToMeanLast float64 `json:"peak_to_mean_1s_last_5min,omitempty"`
	// Calm is the first second after which no 1-second window holds more
	// than twice the mean second of the run's second half; -1: not within
	// the run's last 30 s.
	Calm       float64   `json:"calm_seconds"`
	TTL0       float64   `json:"share_ttl_0"`
	TTL1       float64   `json:"share_ttl_le_1"`
	MeanTTL    float64   `json:"mean_ttl"`
	MinQueries int       `json:"theoretical_min_queries"`
	StaleMax   float64   `json:"max_seconds_past_zone_ttl"`
	StaleMean  float64   `json:"mean_seconds_past_zone_ttl"`
	Stamped    int       `json:"answers_with_the_zones_stamp"` // 0: the staleness is unknown
	CPU        float64   `json:"kube_dns_cpu_seconds"`
	CPUEach    []float64 `json:"kube_dns_cpu_seconds_each"`
	CPUFront   float64   `json:"front_cpu_seconds"` // the resolver, or the node caches
	Agreement  agreement `json:"agreement"`
	LateP99    float64   `json:"send_late_p99_ms"`
	LateMax    float64   `json:"send_late_max_bucket_ms"`
	RTTP99     float64   `json:"answer_p99_ms"`
	LabCPU     float64   `json:"lab_cpu_seconds"` // with -sequential: the lab's own CPU for this scenario
	Upstream   *result   `json:"node_caches_to_kube_dns,omitempty"`
	Bins       []int     `json:"queries_per_100ms"`
	// Seconds are the queries in each wall-clock second from FirstSecond
	// (Unix time, the second Start is in) on: the seconds a server counts
	// in, which the peaks, peak/mean and the calm are read from.
	Seconds     []int     `json:"queries_per_second"`
	FirstSecond int64     `json:"first_second_unix"`
	Start       time.Time `json:"start"`
	// Per kube-dns replica, its queries per wall-clock second, and the
	// answers from expired cache items per 100 ms: for the Prometheus
	// readings (herd.go), not kept.
	ReplicaSeconds [][]int      `json:"-"`
	ExpiredBins    []int        `json:"-"`
	Herd           *herdReading `json:"prometheus,omitempty"`
	// With -answers, the proxies' tally, every answer kept (answers.go).
	answers *tally

	// Churn is the kube scenarios' staleness after endpoint changes (churn.go).
	Churn *churnResult `json:"endpoint_churn,omitempty"`
}

func summarize(u unit, t *tally, duration time.Duration) result {
	r := result{describe: u.describe, Scenario: u.name, Replicas: u.replicas, Clients: u.clients, Bins: binCounts(t.bins), ExpiredBins: binCounts(t.expired),
		Seconds: binCounts(t.seconds), FirstSecond: t.start.Unix(), Start: t.start}
	for i := range t.perReplica {
		r.ReplicaSeconds = append(r.ReplicaSeconds, binCounts(t.perReplica[i]))
	}
	var ttlSum, staleSum float64
	answered, stamped := 0, 0
	for i := range t.loops {
		l := &t.loops[i]
		r.Queries += l.queries
		r.Failed += l.failed
		answered += l.answered
		ttlSum += l.ttlSum
		r.TTL0 += float64(l.ttl0)
		r.TTL1 += float64(l.ttl1)
		r.StaleMax = max(r.StaleMax, l.staleMax)
		staleSum += l.staleSum
		stamped += l.stamped
		if l.answered > 0 {
			r.MinQueries += int(math.Ceil((duration - l.first).Seconds() / (l.heldSum / float64(l.answered))))
		}
	}
	if answered > 0 {
		r.TTL0, r.TTL1, r.MeanTTL = r.TTL0/float64(answered), r.TTL1/float64(answered), ttlSum/float64(answered)
	}
	if r.Stamped = stamped; stamped > 0 {
		r.StaleMean = staleSum / float64(stamped)
	}
	seconds := duration.Seconds()
	r.Per5Min = float64(r.Queries) * 300 / seconds
	r.MeanQPS = float64(r.Queries) / seconds
	r.Peak1s = slices.Max(r.Seconds)
	if r.MeanQPS > 0 {
		r.PeakToMean = float64(r.Peak1s) / r.MeanQPS
	}
	end := t.start.Add(duration)
	r.PeakToMean2nd = r.peakToMean(t.start.Add(duration/2), end)
	if hasSteadyState(duration) {
		r.PeakToMeanLast = r.peakToMean(end.Add(-steadyWindow), end)
	}
	r.Calm = r.calm(duration)
	if half := r.Bins[len(r.Bins)/2:]; r.MeanQPS > 0 {
		total := 0
		for _, n := range half {
			total += n
		}
		if total > 0 {
			r.PeakToMean2ndSliding = float64(peak(half, int(time.Second/bin))) * float64(len(half)) * bin.Seconds() / float64(total)
		}
	}
	r.LateP99 = ms(quantile(&t.late, 0.99))
	r.LateMax = ms(quantile(&t.late, 1))
	r.RTTP99 = ms(quantile(&t.rtt, 0.99))
	return r
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

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

// steadyWindow is the window of a long run's steady state: its last 5
// minutes, 600-900 s of a 15-minute run as the herd simulation reads it
// (herd_test.go). A run of at least twice as long has one.
const steadyWindow = 5 * time.Minute

func hasSteadyState(duration time.Duration) bool { return duration >= 2*steadyWindow }

// The lab reads seconds as a server counts them, by the wall clock, not as
// windows sliding over its 100 ms bins: minttl's jitter moves a client by
// whole wall-clock seconds, and a herd that started in one instant arrives
// in the same few milliseconds of each second, so a sliding window that
// takes in the end of one second and the start of the next can hold the
// clients of two seconds. Which it does depends on where a few milliseconds
// of drift fall against the bins, not on the load.

// wholeSeconds is the range [i, j) of r.Seconds that lies wholly within
// [from, to).
func (r result) wholeSeconds(from, to time.Time) (i, j int) {
	i = int(from.Unix() - r.FirstSecond)
	if from.Nanosecond() > 0 {
		i++
	}
	j = int(to.Unix() - r.FirstSecond)
	return max(i, 0), min(max(j, i, 0), len(r.Seconds))
}

// peakToMean is the busiest wall-clock second wholly within [from, to) over
// their mean second (0: no queries).
func (r result) peakToMean(from, to time.Time) float64 {
	i, j := r.wholeSeconds(from, to)
	peak, total := 0, 0
	for _, n := range r.Seconds[i:j] {
		peak, total = max(peak, n), total+n
	}
	if total == 0 {
		return 0
	}
	return float64(peak) * float64(j-i) / float64(total)
}

// calm is when, in seconds after the start, the last wall-clock second that
// held more than twice the mean second of the run's second half ended:
// after it, no second does (0: none ever did). A storm that lasts into the
// run's last 30 s never calmed (-1).
func (r result) calm(duration time.Duration) float64 {
	i, j := r.wholeSeconds(r.Start.Add(duration/2), r.Start.Add(duration))
	total := 0
	for _, n := range r.Seconds[i:j] {
		total += n
	}
	if j <= i {
		return -1
	}
	limit := 2 * float64(total) / float64(j-i)
	last := -1
	for k, n := range r.Seconds {
		if float64(n) > limit {
			last = k
		}
	}
	if last < 0 {
		return 0
	}
	at := time.Unix(r.FirstSecond+int64(last)+1, 0).Sub(r.Start)
	if at > duration-30*time.Second {
		return -1
	}
	return at.Seconds()
}

func table(cfg config, results []result) string {
	if cfg.nodes > 0 {
		return nodeTable(cfg, results)
	}
	var b strings.Builder
	b.WriteString(runLine(cfg))
	steady, steadyRule := "", ""
	if hasSteadyState(cfg.duration) {
		steady, steadyRule = " peak/mean, last 5 min |", "--:|"
	}
	b.WriteString("| scenario | proxies | kube-dns | queries | per 5 min | min. for TTLs given | peak q/s (1 s) | peak/mean (1 s) | peak/mean, 2nd half |" + steady + " calm after | TTL 0 | TTL ≤ 1 | mean TTL | use past zone TTL, max (mean) | CoreDNS CPU s | replicas differ |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|" + steadyRule + "--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range results {
		last := ""
		if steady != "" {
			last = fmt.Sprintf(" %.2f× |", r.PeakToMeanLast)
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %.0f | %d | %d | %.1f× | %.2f× |%s %s | %.1f %% | %.1f %% | %.1f s | %s | %s | %s |\n",
			r.describe, r.Clients, r.Replicas, r.Queries, r.Per5Min, r.MinQueries, r.Peak1s, r.PeakToMean, r.PeakToMean2nd, last, calmText(r.Calm),
			100*r.TTL0, 100*r.TTL1, r.MeanTTL, staleText(r), cpuText(r), agreementText(r.Agreement))
	}
	b.WriteString(churnTable(results))
	b.WriteString(health(results))
	return b.String()
}

// runLine says what ran, how and where, above a table.
func runLine(cfg config) string {
	return fmt.Sprintf("%s, %s per scenario (%s), start %s, %s proxies; %s, %d cores.\n\n",
		population(cfg), cfg.duration, runKind(cfg), startKind(cfg), proxyKind(cfg), lab.CPUModel(), runtime.NumCPU())
}

// nodeTable has two rows per scenario: the pods asking their node caches, and
// the node caches asking kube-dns through the Service.
func nodeTable(cfg config, results []result) string {
	var b strings.Builder
	b.WriteString(runLine(cfg))
	b.WriteString("| scenario | tier | queries | per 5 min | peak q/s (1 s) | peak/mean, 2nd half | calm after | TTL ≤ 1 | mean TTL | use past zone TTL, max (mean) | CPU s of the tier's servers |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range results {
		rows := []struct {
			tier string
			r    result
			cpu  float64
		}{{fmt.Sprintf("%d pods → %d node caches", r.Clients*cfg.nodes, cfg.nodes), r, r.CPUFront}}
		if r.Upstream != nil {
			rows = append(rows, struct {
				tier string
				r    result
				cpu  float64
			}{fmt.Sprintf("node caches → %d kube-dns", r.Replicas), *r.Upstream, r.CPU})
		}
		for i, row := range rows {
			name := r.describe
			if i > 0 {
				name = ""
			}
			x := row.r
			fmt.Fprintf(&b, "| %s | %s | %d | %.0f | %d | %.1f× | %s | %.1f %% | %.1f s | %s | %.1f |\n",
				name, row.tier, x.Queries, x.Per5Min, x.Peak1s, x.PeakToMean2nd, calmText(x.Calm), 100*x.TTL1, x.MeanTTL, staleText(x), row.cpu)
		}
	}
	b.WriteString(health(results))
	return b.String()
}

// health says whether the lab kept up: failed queries, how late sends left
// against their schedule, how long answers took.
func health(results []result) string {
	var b strings.Builder
	b.WriteString("\nLab: ")
	var parts []string
	for _, r := range results {
		part := fmt.Sprintf("%s %d failed, sends late p99 %s, answers p99 %s", r.Scenario, r.Failed, msText(r.LateP99), msText(r.RTTP99))
		if r.LabCPU > 0 {
			part += fmt.Sprintf(", lab CPU %.1f s", r.LabCPU)
		}
		parts = append(parts, part)
	}
	b.WriteString(strings.Join(parts, "; "))
	fmt.Fprintf(&b, ". Lab process CPU %.0f s in all.\n", selfCPU().Seconds())
	return b.String()
}

func runKind(cfg config) string {
	if cfg.sequential {
		return "one after another"
	}
	return "side by side"
}

func msText(v float64) string {
	if v < 1 {
		return fmt.Sprintf("≤ %.2f ms", v)
	}
	return fmt.Sprintf("≤ %.0f ms", v)
}

func calmText(s float64) string {
	if s < 0 {
		return "never"
	}
	return fmt.Sprintf("%.0f s", s)
}

func staleText(r result) string {
	if r.Stamped == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f s (%.1f s)", r.StaleMax, r.StaleMean)
}

func cpuText(r result) string {
	if r.CPUFront > 0 {
		return fmt.Sprintf("%.1f + %.1f", r.CPU, r.CPUFront)
	}
	return fmt.Sprintf("%.1f", r.CPU)
}

func agreementText(a agreement) string {
	if a.Probes == 0 {
		return "–"
	}
	return fmt.Sprintf("%d of %d (≤ %d s)", a.Differing, a.Probes, a.MaxSpread)
}

func startKind(cfg config) string {
	kind := "lockstep"
	if cfg.stagger > 0 {
		kind = "staggered over " + cfg.stagger.String()
	}
	us, _ := units(cfg)
	if slices.ContainsFunc(us, func(u unit) bool { return u.stagger > 0 }) {
		kind += " unless the scenario says otherwise"
	}
	return kind
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
	md := "Made by `" + strings.TrimSpace("stormlab "+strings.Join(os.Args[1:], " ")) + "`.\n\n" + table(cfg, results)
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
	if err := os.WriteFile(filepath.Join(cfg.out, "storm.svg"), []byte(svg(cfg, results)), 0o644); err != nil {
		return err
	}
	if err := writeAnswers(cfg.out, results); err != nil {
		return err
	}
	if cfg.prometheus == 0 {
		return nil
	}
	made := "Made by `" + strings.TrimSpace("stormlab "+strings.Join(os.Args[1:], " ")) + "`.\n\n"
	tables := map[string]string{"prometheus.md": herdTable(cfg, results)}
	if slices.ContainsFunc(results, answeredStale) {
		tables["stale.md"] = staleTable(cfg, results)
	}
	for file, table := range tables {
		if err := os.WriteFile(filepath.Join(cfg.out, file), []byte(made+table), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(cfg.out, "herd.svg"), []byte(herdSVG(cfg, results)), 0o644)
}

// answeredStale reports whether minttl saw answers with TTL 0 (a cache
// answered from expired items): only such runs get the stale table.
func answeredStale(r result) bool {
	h := r.Herd
	return h != nil && (h.Stale > 0 || h.StaleMax > 0)
}

// svg draws queries per 100 ms over time, one lane per scenario (and tier),
// all lanes on one logarithmic scale, so that a storm looks like one and calm
// stays visible; a mark shows where each lane calmed.
func svg(cfg config, results []result) string {
	type lane struct {
		name string
		r    result
	}
	var lanes []lane
	for _, r := range results {
		lanes = append(lanes, lane{r.Scenario, r})
		if r.Upstream != nil {
			lanes = append(lanes, lane{r.Scenario + " (node caches → kube-dns)", *r.Upstream})
		}
	}
	const width, height1, left, top = 1000.0, 90.0, 300.0, 30.0
	scale := 1
	for _, l := range lanes {
		scale = max(scale, peak(l.r.Bins, 1))
	}
	var b strings.Builder
	height := top + height1*float64(len(lanes)) + 30
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", left+width+20, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="18" font-size="14">Queries per 100 ms, %s, %s start (one log scale: %d at the top; | calm)</text>`+"\n",
		left, population(cfg), startKind(cfg), scale)
	for i, l := range lanes {
		y0 := top + height1*float64(i+1) - 10
		fmt.Fprintf(&b, `<text x="5" y="%.0f">%s</text>`+"\n", y0-height1/2+10, escape(l.name))
		fmt.Fprintf(&b, `<text x="5" y="%.0f" fill="#555">peak %d/100 ms, %d queries, calm %s</text>`+"\n", y0-height1/2+26, peak(l.r.Bins, 1), l.r.Queries, calmText(l.r.Calm))
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#ccc"/>`+"\n", left, y0, left+width, y0)
		var pts strings.Builder
		for j, n := range l.r.Bins {
			x := left + width*float64(j)/float64(len(l.r.Bins))
			fmt.Fprintf(&pts, "%.1f,%.1f ", x, y0-(height1-20)*math.Log1p(float64(n))/math.Log1p(float64(scale)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="#c0392b" stroke-width="1" points="%s"/>`+"\n", pts.String())
		if l.r.Calm >= 0 {
			x := left + width*l.r.Calm/cfg.duration.Seconds()
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#2471a3" stroke-width="2"/>`+"\n", x, y0, x, y0-height1+20)
		}
	}
	for s := 0.0; s <= cfg.duration.Seconds(); s += 60 {
		x := left + width*s/cfg.duration.Seconds()
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#555">%.0f s</text>`+"\n", x, height-8, s)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// population is the run's proxy counts, the scenarios' own among them.
func population(cfg config) string {
	var counts []string
	us, _ := units(cfg)
	for _, u := range us {
		if n := fmt.Sprint(u.clients); !slices.Contains(counts, n) {
			counts = append(counts, n)
		}
	}
	if cfg.nodes > 0 {
		return fmt.Sprintf("%d nodes × %s pods × 2 SRV names", cfg.nodes, strings.Join(counts, "/"))
	}
	if cfg.perNode > 0 {
		return fmt.Sprintf("%s proxies (pods, %d a node) × 2 SRV names", strings.Join(counts, "/"), cfg.perNode)
	}
	return fmt.Sprintf("%s proxies × 2 SRV names", strings.Join(counts, "/"))
}

func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
