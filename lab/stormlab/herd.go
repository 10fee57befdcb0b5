package main

// The herd as an operator sees it: one Prometheus scrapes every kube-dns
// replica of the run with deploy/'s rules loaded, and at the end the lab asks
// it, per scenario, for the herd factor (coredns_minttl_queries_per_second),
// the request rate (coredns_dns_requests_total) and whether MinttlDNSHerd
// fired, beside the lab's own count of the same seconds.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/minttl/minttl/lab/internal/lab"
)

// herdThreshold is MinttlDNSHerd's herd factor (deploy/monitoring).
const herdThreshold = 3

// ruleWindow is the window of deploy/'s rules: herd factors over 5 minutes,
// alerts after 10.
const ruleWindow = 5 * time.Minute

// herdReading is what Prometheus said of one scenario at the end of the run.
type herdReading struct {
	HerdFactor  reading `json:"herd_factor"`    // deploy's recording rule, the highest of the replicas'; NaN: no minttl metric
	MeanSecond  reading `json:"mean_second"`    // of one replica, by the rule
	RequestRate reading `json:"requests_per_s"` // coredns_dns_requests_total, all replicas, over the run
	LabP99      reading `json:"lab_p99_to_mean"`
	LabPeak     reading `json:"lab_peak_to_mean"`
	Fired       bool    `json:"alert_fired"`
	// When the herd factor fell below the alert's threshold, in seconds into
	// the run (-1: never): first over a minute (the calm itself), and for
	// good by the rule (the calm plus its 5-minute window).
	CalmAt1m   float64 `json:"herd_factor_1m_first_below_threshold_s"`
	CalmAt     float64 `json:"herd_factor_5m_below_threshold_from_s"`
	FiredAt    float64 `json:"alert_first_firing_s"` // seconds into the run; -1: never
	FiredUntil float64 `json:"alert_last_firing_s"`  // the last second it fired; the run's end: still firing
	// Over the run, every scrape interval: the rule's herd factor and one
	// over the last minute, from the raw histogram.
	Factor5m   factorSeries `json:"herd_factor_5m"`
	Factor1m   factorSeries `json:"herd_factor_1m"`
	servers    string       // regular expression of the replicas' server labels
	start, end time.Time
}

// startPrometheus starts the run's Prometheus, with deploy/'s rules scaled to
// window (5m as they ship; the short test's windows are seconds).
func startPrometheus(ctx context.Context, cfg config) (*lab.Prometheus, string, error) {
	dir, err := os.MkdirTemp("", "stormlab-prometheus-")
	if err != nil {
		return nil, "", err
	}
	text, err := os.ReadFile(cfg.rules)
	if err != nil {
		return nil, dir, err
	}
	rules := filepath.Join(dir, "rules.yaml")
	scaled := scaleDurations(string(text), float64(cfg.window)/float64(ruleWindow))
	if err := os.WriteFile(rules, []byte(scaled), 0o644); err != nil {
		return nil, dir, err
	}
	p, err := lab.StartPrometheus(ctx, dir, lab.PrometheusOptions{Interval: cfg.prometheus, Rules: []string{rules}})
	return p, dir, err
}

var ruleDuration = regexp.MustCompile(`(\[|offset |for: )(\d+)([smh])\b`)

// scaleDurations multiplies every range, offset and for: duration in rules by factor.
func scaleDurations(rules string, factor float64) string {
	if factor == 1 {
		return rules
	}
	return ruleDuration.ReplaceAllStringFunc(rules, func(m string) string {
		parts := ruleDuration.FindStringSubmatch(m)
		n, _ := strconv.Atoi(parts[2])
		d := time.Duration(n) * map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}[parts[3]]
		return fmt.Sprintf("%s%ds", parts[1], max(int(math.Round(d.Seconds()*factor)), 1))
	})
}

// scrape has p scrape the unit's kube-dns replicas, labelled with its scenario.
func scrape(p *lab.Prometheus, label string, c *cluster) error {
	if len(c.metrics) == 0 {
		return fmt.Errorf("%s: its Corefile has no prometheus METRICS line", label)
	}
	return p.Scrape(strings.NewReplacer("×", "x", "/", "_").Replace(label), c.metrics, map[string]string{"scenario": label})
}

// serverPattern matches the server labels of the replicas listening at addrs.
func serverPattern(addrs []string) string {
	var quoted []string
	for _, a := range addrs {
		quoted = append(quoted, regexp.QuoteMeta("dns://"+a))
	}
	return strings.Join(quoted, "|")
}

// readHerd asks p about r's scenario, whose proxies ran from start to end,
// and puts the lab's own count of the rule's last window beside it.
func readHerd(ctx context.Context, p *lab.Prometheus, cfg config, r *result, h *herdReading) error {
	at := h.end
	sel := fmt.Sprintf(`{server=~%q}`, h.servers)
	one := func(expr string) (reading, error) {
		samples, err := p.Query(ctx, expr, at)
		if err != nil || len(samples) == 0 {
			return reading(math.NaN()), err
		}
		best := samples[0].Value
		for _, s := range samples[1:] {
			best = max(best, s.Value)
		}
		return reading(best), nil
	}
	var err error
	if h.HerdFactor, err = one("server_zone:coredns_minttl_queries_per_second:herd_factor5m" + sel); err != nil {
		return err
	}
	if h.MeanSecond, err = one("server_zone:coredns_minttl_queries_per_second:mean5m" + sel); err != nil {
		return err
	}
	run := promDuration(h.end.Sub(h.start))
	if h.RequestRate, err = one(fmt.Sprintf(`sum(rate(coredns_dns_requests_total{scenario=%q}[%s]))`, r.Scenario, run)); err != nil {
		return err
	}
	fired, err := p.QueryRange(ctx, fmt.Sprintf(`max(ALERTS{alertname="MinttlDNSHerd",alertstate="firing",server=~%q})`, h.servers), h.start, h.end, cfg.prometheus)
	if err != nil {
		return err
	}
	h.FiredAt = -1
	if len(fired) > 0 && len(fired[0].Times) > 0 {
		times := fired[0].Times
		h.Fired, h.FiredAt, h.FiredUntil = true, times[0].Sub(h.start).Seconds(), times[len(times)-1].Sub(h.start).Seconds()
	}
	if err := h.readSeries(ctx, p, cfg, r.Scenario); err != nil {
		return err
	}
	h.CalmAt1m, h.CalmAt = h.Factor1m.firstBelow(), h.Factor5m.belowFrom()
	p99, peak := labSeconds(r.Bins, h.start, h.end.Add(-cfg.window), h.end)
	h.LabP99, h.LabPeak = reading(p99), reading(peak)
	return nil
}

// readSeries reads the herd factor over the run, every scrape interval: the
// rule's (5 minutes) and one over the last minute, all replicas together.
func (h *herdReading) readSeries(ctx context.Context, p *lab.Prometheus, cfg config, scenario string) error {
	short := promDuration(shortWindow(cfg))
	sel := fmt.Sprintf(`{scenario=%q}`, scenario)
	oneMinute := fmt.Sprintf(`histogram_quantile(0.99, sum by (le) (rate(coredns_minttl_queries_per_second_bucket%s[%s]))) / (sum(rate(coredns_minttl_queries_per_second_sum%s[%s])) / sum(rate(coredns_minttl_queries_per_second_count%s[%s])) > 0)`,
		sel, short, sel, short, sel, short)
	five := fmt.Sprintf(`max(server_zone:coredns_minttl_queries_per_second:herd_factor5m{server=~%q})`, h.servers)
	for _, q := range []struct {
		expr string
		into *factorSeries
	}{{five, &h.Factor5m}, {oneMinute, &h.Factor1m}} {
		series, err := p.QueryRange(ctx, q.expr, h.start, h.end, cfg.prometheus)
		if err != nil {
			return err
		}
		*q.into = factorSeries{}
		if len(series) == 0 {
			continue
		}
		for i, t := range series[0].Times {
			q.into.Times = append(q.into.Times, t.Sub(h.start).Seconds())
			q.into.Values = append(q.into.Values, reading(series[0].Values[i]))
		}
	}
	return nil
}

// factorSeries is a herd factor over the run: its readings and their times,
// in seconds into the run. (The rule's starts a step later than a query's.)
type factorSeries struct {
	Times  []float64 `json:"times_s"`
	Values []reading `json:"values"`
}

// shortWindow is the window of the herd factor that shows the calm: a fifth
// of the rules' (a minute), and at least 4 scrapes.
func shortWindow(cfg config) time.Duration { return max(cfg.window/5, 4*cfg.prometheus) }

// belowFrom is the time from which on the readings stay below the alert's
// threshold (those that exist), or -1 if the last one does not.
func (f factorSeries) belowFrom() float64 {
	calm := 0.0
	for i, v := range f.Values {
		if v >= herdThreshold { // false for NaN: no reading
			if i == len(f.Values)-1 {
				return -1
			}
			calm = f.Times[i+1]
		}
	}
	return calm
}

// firstBelow is the time of the first reading below the alert's threshold,
// or -1. Over a minute, at a few queries a second per replica, chance alone
// lifts an even load's now and then near 3 (docs/monitoring.md), so the
// calm is the first reading below it, not the last one above.
func (f factorSeries) firstBelow() float64 {
	for i, v := range f.Values {
		if v < herdThreshold {
			return f.Times[i]
		}
	}
	return -1
}

// labSeconds is the lab's own reading of the seconds from `from` to end:
// its per-second counts (from the 100 ms bins, on wall-clock seconds as
// CoreDNS counts them), their 99th percentile and their peak over the mean.
func labSeconds(bins []int, start, from, end time.Time) (p99, peak float64) {
	perSecond := map[int64]int{}
	for i, n := range bins {
		at := start.Add(time.Duration(i) * bin)
		if !at.Before(from) && at.Before(end) {
			perSecond[at.Unix()] += n
		}
	}
	var counts []float64
	total := 0.0
	for s := from.Unix(); s < end.Unix(); s++ {
		counts = append(counts, float64(perSecond[s]))
		total += float64(perSecond[s])
	}
	if len(counts) == 0 || total == 0 {
		return math.NaN(), math.NaN()
	}
	mean := total / float64(len(counts))
	slices.Sort(counts)
	rank := int(math.Ceil(0.99*float64(len(counts)))) - 1
	return counts[rank] / mean, counts[len(counts)-1] / mean
}

// reading is a value Prometheus gave, which may be NaN or infinite (no
// series, a mean of 0): null in JSON, which has neither.
type reading float64

func (r reading) MarshalJSON() ([]byte, error) {
	if f := float64(r); math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(r))
}

func promDuration(d time.Duration) string { return fmt.Sprintf("%ds", int(d.Seconds())) }

// herdTable is the Prometheus table: per scenario, what the operator sees.
func herdTable(cfg config, results []result) string {
	var b strings.Builder
	b.WriteString(runLine(cfg))
	fmt.Fprintf(&b, "Prometheus scraped every kube-dns replica every %s with deploy/monitoring/minttl-rules.yaml (windows %s); readings at the end of the run, over its last %s.\n\n",
		cfg.prometheus, cfg.window, cfg.window)
	b.WriteString("| scenario | herd factor (rule, p99 / mean second) | lab: p99 / mean second | lab: peak / mean second | mean second (rule) | requests/s over the run (coredns_dns_requests_total) | MinttlDNSHerd fired | herd factor over " + promDuration(shortWindow(cfg)) + " first below the alert's " + fmt.Sprint(herdThreshold) + " | herd factor (rule) below " + fmt.Sprint(herdThreshold) + " from |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--|--:|--:|\n")
	for _, r := range results {
		h := r.Herd
		if h == nil {
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %.1f | %.1f | %s | %.1f | %s | %s | %s |\n", r.describe, factorText(h.HerdFactor), h.LabP99, h.LabPeak,
			factorText(h.MeanSecond), float64(h.RequestRate), firedText(h, cfg.prometheus), calmAtText(h, h.CalmAt1m), calmAtText(h, h.CalmAt))
	}
	return b.String()
}

func factorText(r reading) string {
	v := float64(r)
	if math.IsNaN(v) {
		return "– (no minttl)"
	}
	return fmt.Sprintf("%.1f", v)
}

func calmAtText(h *herdReading, at float64) string {
	switch {
	case math.IsNaN(float64(h.HerdFactor)):
		return "–"
	case at < 0:
		return "never"
	}
	return fmt.Sprintf("%.0f s", at)
}

// firedText says when the alert fired; one that fired in the last scrape
// interval (step) was still firing at the end.
func firedText(h *herdReading, step time.Duration) string {
	switch {
	case !h.Fired:
		return "no"
	case h.FiredUntil >= (h.end.Sub(h.start) - step).Seconds():
		return fmt.Sprintf("from %.0f s to the end", h.FiredAt)
	}
	return fmt.Sprintf("from %.0f s to %.0f s", h.FiredAt, h.FiredUntil)
}

// herdSVG draws the herd factor over the run, one lane per scenario: the
// rule's over 5 minutes, and over the last minute (the same histogram).
func herdSVG(cfg config, results []result) string {
	const width, lane, left, top = 1000.0, 110.0, 300.0, 30.0
	var rs []result
	for _, r := range results {
		if r.Herd != nil {
			rs = append(rs, r)
		}
	}
	height := top + lane*float64(len(rs)) + 30
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", left+width+20, height)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="18" font-size="14">Herd factor from Prometheus (log scale 1 to 64): red, the rule over %s; grey, over %s; dashed, the alert's %d</text>`+"\n",
		left, cfg.window, promDuration(shortWindow(cfg)), herdThreshold)
	y := func(y0, v float64) float64 { return y0 - (lane-20)*math.Log2(min(max(v, 1), 64))/6 }
	for i, r := range rs {
		h := r.Herd
		y0 := top + lane*float64(i+1) - 10
		fmt.Fprintf(&b, `<text x="5" y="%.0f">%s</text>`+"\n", y0-lane/2+10, escape(r.Scenario))
		fmt.Fprintf(&b, `<text x="5" y="%.0f" fill="#555">at the end %s; alert %s</text>`+"\n", y0-lane/2+26, factorText(h.HerdFactor), firedText(h, cfg.prometheus))
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#ccc"/>`+"\n", left, y0, left+width, y0)
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#999" stroke-dasharray="4 4"/>`+"\n", left, y(y0, herdThreshold), left+width, y(y0, herdThreshold))
		for _, tick := range []float64{1, 4, 16, 64} {
			fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" fill="#999" font-size="10">%.0f</text>`+"\n", left+width+4, y(y0, tick)+4, tick)
		}
		for _, s := range []struct {
			factors factorSeries
			color   string
		}{{h.Factor1m, "#aaa"}, {h.Factor5m, "#c0392b"}} {
			var pts strings.Builder
			for j, v := range s.factors.Values {
				if f := float64(v); !math.IsNaN(f) && !math.IsInf(f, 0) {
					fmt.Fprintf(&pts, "%.1f,%.1f ", left+width*s.factors.Times[j]/cfg.duration.Seconds(), y(y0, f))
				}
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", s.color, pts.String())
		}
	}
	for s := 0.0; s <= cfg.duration.Seconds(); s += 120 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#555">%.0f s</text>`+"\n", left+width*s/cfg.duration.Seconds(), height-8, s)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// readHerds reads every scenario's herding from p.
func readHerds(ctx context.Context, p *lab.Prometheus, cfg config, results []result) error {
	for i := range results {
		if h := results[i].Herd; h != nil {
			if err := readHerd(ctx, p, cfg, &results[i], h); err != nil {
				return fmt.Errorf("%s: %w", results[i].Scenario, err)
			}
		}
	}
	return nil
}
