package main

// The lab as a cluster's Prometheus sees it. Every unit (a scenario at one
// replica and proxy count) gets a Prometheus of its own with deploy/'s rules
// loaded, which scrapes its kube-dns replicas with the labels a cluster
// leaves: one server label for all of them (dns://:53), told apart by
// instance and pod. The rules sum by server and zone, and every unit's zone is
// the same; one Prometheus for all units would pool them into one cluster.
// At the end of the run the lab asks it for the herd factor (the rule's fit
// over the replicas and each replica's own), the busiest seconds, the rates,
// the share of queries answered stale and when the alerts fired, and puts its
// own count of the same seconds beside them.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minttl/minttl/lab/internal/lab"
)

// herdThreshold is MinttlDNSHerd's herd factor, staleThreshold
// MinttlStaleAnswers's share of stale answers (deploy/monitoring).
const (
	herdThreshold  = 3
	staleThreshold = 0.5
)

// ruleWindow is the window of deploy/'s rules: herd factors over 5 minutes,
// alerts after 10.
const ruleWindow = 5 * time.Minute

// sharedServer is the server label every kube-dns replica exports in a
// cluster (a Corefile's .:53); the lab's Prometheus gives it to every replica.
const sharedServer = "dns://:53"

// The minttl histogram and the rules the lab reads (deploy/monitoring).
const (
	perSecondMetric = "coredns_minttl_queries_per_second"
	herdRule        = "server_zone:coredns_minttl_queries_per_second:herd_factor5m"
	busiestRule     = "server_zone:coredns_minttl_queries_per_second:p99_5m"
	zoneRateRule    = "server_zone:coredns_minttl_queries:rate5m"
	staleRule       = "server_zone:coredns_minttl_zero_ttl_responses:ratio_rate5m"
	replicaHerdRule = "instance_server_zone:coredns_minttl_queries_per_second:herd_factor5m"
	replicaMeanRule = "instance_server_zone:coredns_minttl_queries_per_second:mean5m"
	replicaP99Rule  = "instance_server_zone:coredns_minttl_queries_per_second:p99_5m"
)

// herdReading is what the unit's Prometheus said at the end of the run, and
// the lab's own count of the same seconds.
type herdReading struct {
	// The rules' readings over their last window (5 minutes as shipped).
	Server      string           `json:"server"`         // the server label of the rules' readings
	HerdFactor  reading          `json:"herd_factor"`    // server and zone: the fit over the replicas; NaN: no minttl metric
	Busiest     reading          `json:"busiest_second"` // server and zone: the replicas' p99 seconds, weighed by their queries
	ZoneRate    reading          `json:"zone_queries_per_s"`
	Replicas    []replicaReading `json:"replicas"`
	RequestRate reading          `json:"requests_per_s"` // coredns_dns_requests_total, all replicas, over the run
	// The lab's count of the proxies' queries over the same window: each
	// replica's seconds fitted as the rule fits them, and all replicas'
	// queries together per second (the cluster's seconds).
	LabFit  reading    `json:"lab_fit_over_replicas"`
	LabP99  reading    `json:"lab_all_replicas_p99_to_mean"`
	LabPeak reading    `json:"lab_all_replicas_peak_to_mean"`
	Fired   alertTimes `json:"minttl_dns_herd"`
	// When the herd factor fell below the alert's threshold, in seconds into
	// the run (-1: never): first over a minute (the calm itself), and for
	// good by the rule (the calm plus its 5-minute window).
	CalmAt1m float64 `json:"herd_factor_1m_first_below_threshold_s"`
	CalmAt   float64 `json:"herd_factor_5m_below_threshold_from_s"`
	// Over the run, every scrape interval: the rule's herd factor and the
	// same fit over the last minute, from the raw histogram.
	Factor5m factorSeries `json:"herd_factor_5m"`
	Factor1m factorSeries `json:"herd_factor_1m"`

	// MinttlStaleAnswers's input: the share of the zone's queries answered
	// with a TTL-0 record (the rule), at the end, at the zone's failure
	// where it fails, and the highest over the run once a window was full;
	// the mean second per replica (its rate gate); and the lab's share of
	// answers whose data was past the zone's TTL over the same windows.
	Stale          reading    `json:"stale_share"`
	StaleAtFailure reading    `json:"stale_share_at_failure"`
	StaleMax       reading    `json:"stale_share_max"`
	ReplicaRate    reading    `json:"mean_queries_per_s_per_replica"`
	LabStale       reading    `json:"lab_stale_share"`
	LabStaleBefore reading    `json:"lab_stale_share_before_failure"`
	StaleFired     alertTimes `json:"minttl_stale_answers"`

	// The herd factor and mean second with every replica's seconds pooled
	// into one histogram (sum by server and zone), as the rules before
	// issue 23 read them (their alert: factor above 3, mean above 5).
	PooledFactor reading `json:"pooled_herd_factor"`
	PooledMean   reading `json:"pooled_mean_second"`

	// What Prometheus kept of the histogram (the scrape mode shows here): its
	// classic series and native histograms, and the herd factor a rule that
	// reads only the classic series gets (NaN: nothing to read).
	ClassicSeries     int     `json:"classic_bucket_series"`
	NativeSeries      int     `json:"native_histogram_series"`
	ClassicOnlyFactor reading `json:"herd_factor_classic_series_only"`

	start, end time.Time
}

// replicaReading is one replica's herd factor, mean second and busiest
// seconds by the rules, and the lab's p99 / mean second of its queries.
type replicaReading struct {
	Pod        string  `json:"pod"`
	HerdFactor reading `json:"herd_factor"`
	MeanSecond reading `json:"mean_second"`
	P99        reading `json:"p99_second"`
	Lab        reading `json:"lab_p99_to_mean"`
}

// alertTimes says whether and when an alert fired, in seconds into the run.
type alertTimes struct {
	Fired bool    `json:"fired"`
	From  float64 `json:"first_firing_s"` // -1: never
	Until float64 `json:"last_firing_s"`  // the run's end: still firing
}

// startPrometheus starts a unit's Prometheus, with deploy/'s rules scaled to
// cfg.window (5m as they ship; the short test's windows are seconds).
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
	startingServer.Lock()
	defer startingServer.Unlock()
	p, err := lab.StartPrometheus(ctx, dir, lab.PrometheusOptions{Interval: cfg.prometheus, Rules: []string{rules},
		Histograms: cfg.histograms, SharedServer: sharedServer})
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

// scrape has p scrape the unit's kube-dns replicas as a cluster's Prometheus
// does: each its own instance (its /metrics address) and pod, all of them
// with the server label dns://:53.
func scrape(p *lab.Prometheus, c *cluster) error {
	if len(c.metrics) != len(c.replicas) {
		return fmt.Errorf("%d of %d replicas have a prometheus METRICS line in their Corefile", len(c.metrics), len(c.replicas))
	}
	var groups []lab.TargetGroup
	for i, m := range c.metrics {
		groups = append(groups, lab.TargetGroup{Targets: []string{m}, SharedServer: true,
			Labels: map[string]string{"namespace": "kube-system", "pod": podName(i)}})
	}
	return p.ScrapeGroups("kube-dns", groups...)
}

// podName is replica i's pod label.
func podName(i int) string { return fmt.Sprintf("coredns-%d", i) }

// readHerd asks the unit's Prometheus p about the run from h.start to h.end,
// and puts the lab's own count of the rules' last window beside it.
func readHerd(ctx context.Context, p *lab.Prometheus, cfg config, u unit, c *cluster, r *result, h *herdReading) error {
	at := h.end
	oneAt := func(expr string, at time.Time) (reading, error) {
		samples, err := p.Query(ctx, expr, at)
		if err != nil || len(samples) == 0 {
			return reading(math.NaN()), err
		}
		if len(samples) > 1 {
			return reading(math.NaN()), fmt.Errorf("%s: %d series, want one server and zone", expr, len(samples))
		}
		if server := samples[0].Labels["server"]; server != "" {
			h.Server = server
		}
		return reading(samples[0].Value), nil
	}
	one := func(expr string) (reading, error) { return oneAt(expr, at) }
	run := promDuration(h.end.Sub(h.start))
	for _, q := range []struct {
		expr string
		into *reading
	}{
		{herdRule, &h.HerdFactor},
		{busiestRule, &h.Busiest},
		{zoneRateRule, &h.ZoneRate},
		{staleRule, &h.Stale},
		{"avg by (server, zone) (" + replicaMeanRule + ")", &h.ReplicaRate},
		{fmt.Sprintf("sum(rate(coredns_dns_requests_total[%s]))", run), &h.RequestRate},
		{fitExpr(promDuration(cfg.window), true), &h.ClassicOnlyFactor},
		{pooledExpr(promDuration(cfg.window), true), &h.PooledFactor},
		{pooledExpr(promDuration(cfg.window), false), &h.PooledMean},
	} {
		var err error
		if *q.into, err = one(q.expr); err != nil {
			return err
		}
	}
	for _, q := range []struct {
		expr string
		into *int
	}{{perSecondMetric + "_bucket", &h.ClassicSeries}, {perSecondMetric, &h.NativeSeries}} {
		samples, err := p.Query(ctx, q.expr, at)
		if err != nil {
			return err
		}
		*q.into = len(samples)
	}
	if err := h.readReplicas(ctx, p, c, at); err != nil {
		return err
	}
	var err error
	if h.Fired, err = alertFired(ctx, p, cfg, "MinttlDNSHerd", h.start, h.end); err != nil {
		return err
	}
	if h.StaleFired, err = alertFired(ctx, p, cfg, "MinttlStaleAnswers", h.start, h.end); err != nil {
		return err
	}
	if err := h.readSeries(ctx, p, cfg, u); err != nil {
		return err
	}
	h.CalmAt1m, h.CalmAt = h.Factor1m.firstBelow(), h.Factor5m.belowFrom()
	from := h.end.Add(-cfg.window)
	p99, peak := labSeconds(r.Seconds, r.FirstSecond, from, h.end)
	h.LabP99, h.LabPeak = reading(p99), reading(peak)
	h.LabFit = reading(labFit(r.ReplicaSeconds, r.FirstSecond, from, h.end, h.Replicas))
	h.LabStale = reading(share(r.ExpiredBins, r.Bins, h.start, from, h.end))
	h.StaleAtFailure, h.LabStaleBefore = reading(math.NaN()), reading(math.NaN())
	if u.failsAt > 0 {
		failed := h.start.Add(u.failure(cfg.duration))
		if h.StaleAtFailure, err = oneAt(staleRule, failed); err != nil {
			return err
		}
		h.LabStaleBefore = reading(share(r.ExpiredBins, r.Bins, h.start, failed.Add(-cfg.window), failed))
	}
	return nil
}

// readReplicas reads each replica's herd factor, mean and busiest seconds by
// the rules, matching Prometheus's instance label to the replica's /metrics
// address.
func (h *herdReading) readReplicas(ctx context.Context, p *lab.Prometheus, c *cluster, at time.Time) error {
	h.Replicas = make([]replicaReading, len(c.metrics))
	for i := range h.Replicas {
		h.Replicas[i] = replicaReading{Pod: podName(i), HerdFactor: reading(math.NaN()), MeanSecond: reading(math.NaN()), P99: reading(math.NaN()), Lab: reading(math.NaN())}
	}
	for _, q := range []struct {
		rule string
		into func(*replicaReading) *reading
	}{
		{replicaHerdRule, func(r *replicaReading) *reading { return &r.HerdFactor }},
		{replicaMeanRule, func(r *replicaReading) *reading { return &r.MeanSecond }},
		{replicaP99Rule, func(r *replicaReading) *reading { return &r.P99 }},
	} {
		samples, err := p.Query(ctx, q.rule, at)
		if err != nil {
			return err
		}
		for _, s := range samples {
			i := slices.Index(c.metrics, s.Labels["instance"])
			if i < 0 {
				return fmt.Errorf("%s: instance %q is none of the replicas %v", q.rule, s.Labels["instance"], c.metrics)
			}
			*q.into(&h.Replicas[i]) = reading(s.Value)
		}
	}
	return nil
}

// alertFired reads when alert fired between start and end.
func alertFired(ctx context.Context, p *lab.Prometheus, cfg config, alert string, start, end time.Time) (alertTimes, error) {
	fired, err := p.QueryRange(ctx, fmt.Sprintf(`max(ALERTS{alertname=%q,alertstate="firing"})`, alert), start, end, cfg.prometheus)
	a := alertTimes{From: -1, Until: -1}
	if err != nil || len(fired) == 0 || len(fired[0].Times) == 0 {
		return a, err
	}
	times := fired[0].Times
	return alertTimes{Fired: true, From: times[0].Sub(start).Seconds(), Until: times[len(times)-1].Sub(start).Seconds()}, nil
}

// fitExpr is the rules' herd factor of a server and zone over window w: each
// instance's p99 second over its mean second, fitted over the instances
// (sum p99 × mean / sum mean²). It reads the native histogram or the classic
// series, as the rules do; classicOnly reads the classic series alone, as
// rules written for them do (they find nothing where only native
// histograms are kept).
func fitExpr(w string, classicOnly bool) string {
	m := perSecondMetric
	mean := fmt.Sprintf(`sum by (instance) (rate(%[1]s_sum[%[2]s])) / (sum by (instance) (rate(%[1]s_count[%[2]s])) > 0)`, m, w)
	p99 := fmt.Sprintf(`histogram_quantile(0.99, sum by (instance, le) (rate(%s_bucket[%s])))`, m, w)
	if !classicOnly {
		mean = fmt.Sprintf(`sum by (instance) (histogram_sum(rate(%[1]s[%[2]s])) or rate(%[1]s_sum[%[2]s])) / (sum by (instance) (histogram_count(rate(%[1]s[%[2]s])) or rate(%[1]s_count[%[2]s])) > 0)`, m, w)
		p99 = fmt.Sprintf(`histogram_quantile(0.99, sum by (instance) (rate(%[1]s[%[2]s]))) or %[3]s`, m, w, p99)
	}
	return fmt.Sprintf(`sum((%s) * (%s)) / (sum((%s) ^ 2) > 0)`, p99, mean, mean)
}

// pooledExpr is the herd factor (or the mean second) of all replicas'
// seconds pooled into one histogram, as the rules before issue 23 read it,
// from the native histogram or the classic series.
func pooledExpr(w string, factor bool) string {
	m := perSecondMetric
	mean := fmt.Sprintf(`sum(histogram_sum(rate(%[1]s[%[2]s])) or rate(%[1]s_sum[%[2]s])) / (sum(histogram_count(rate(%[1]s[%[2]s])) or rate(%[1]s_count[%[2]s])) > 0)`, m, w)
	if !factor {
		return mean
	}
	p99 := fmt.Sprintf(`histogram_quantile(0.99, sum(rate(%[1]s[%[2]s]))) or histogram_quantile(0.99, sum by (le) (rate(%[1]s_bucket[%[2]s])))`, m, w)
	return fmt.Sprintf(`(%s) / (%s)`, p99, mean)
}

// readSeries reads over the run, every scrape interval, the rule's herd
// factor, the same fit over the last minute from the raw histogram, and the
// share of stale answers.
func (h *herdReading) readSeries(ctx context.Context, p *lab.Prometheus, cfg config, u unit) error {
	var staleSeries factorSeries
	for _, q := range []struct {
		expr string
		into *factorSeries
	}{{herdRule, &h.Factor5m}, {fitExpr(promDuration(shortWindow(cfg)), false), &h.Factor1m}, {staleRule, &staleSeries}} {
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
	h.StaleMax = staleSeries.maxFrom(cfg.window.Seconds())
	return nil
}

// factorSeries is a reading over the run: its values and their times, in
// seconds into the run. (The rule's starts a step later than a query's.)
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

// maxFrom is the highest reading from the time from on (NaN: none).
func (f factorSeries) maxFrom(from float64) reading {
	best := math.NaN()
	for i, v := range f.Values {
		if f.Times[i] >= from && !math.IsNaN(float64(v)) && !(float64(v) <= best) {
			best = float64(v)
		}
	}
	return reading(best)
}

// perSecondCounts are the wall-clock seconds from the one `from` is in to
// the one before end's, as CoreDNS counts them, of per-second counts whose
// first is the second first (Unix time).
func perSecondCounts(seconds []int, first int64, from, end time.Time) []float64 {
	var counts []float64
	for s := from.Unix(); s < end.Unix(); s++ {
		n := 0
		if i := s - first; i >= 0 && i < int64(len(seconds)) {
			n = seconds[i]
		}
		counts = append(counts, float64(n))
	}
	return counts
}

// secondsP99 are the 99th percentile and the peak of counts, and their mean
// (NaN: no queries).
func secondsP99(counts []float64) (p99, peak, mean float64) {
	total := 0.0
	for _, c := range counts {
		total += c
	}
	if len(counts) == 0 || total == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	mean = total / float64(len(counts))
	sorted := slices.Sorted(slices.Values(counts))
	rank := int(math.Ceil(0.99*float64(len(sorted)))) - 1
	return sorted[rank], sorted[len(sorted)-1], mean
}

// labSeconds is the lab's own reading of the seconds from `from` to end, all
// replicas' queries together: the 99th percentile and the peak over the mean.
func labSeconds(seconds []int, first int64, from, end time.Time) (p99, peak float64) {
	p, k, mean := secondsP99(perSecondCounts(seconds, first, from, end))
	return p / mean, k / mean
}

// labFit is the lab's reading fitted as the rules fit theirs: each replica's
// 99th percentile second and mean second of the queries the proxies sent it,
// sum p99 × mean / sum mean² over the replicas. It fills in each replica's
// p99 / mean into replicas.
func labFit(perReplica [][]int, first int64, from, end time.Time, replicas []replicaReading) float64 {
	var num, den float64
	for i, seconds := range perReplica {
		p99, _, mean := secondsP99(perSecondCounts(seconds, first, from, end))
		if i < len(replicas) {
			replicas[i].Lab = reading(p99 / mean)
		}
		if !math.IsNaN(mean) {
			num, den = num+p99*mean, den+mean*mean
		}
	}
	if den == 0 {
		return math.NaN()
	}
	return num / den
}

// share is the share of the queries in bins from `from` to end that parts
// counts (NaN: no queries).
func share(parts, bins []int, start, from, end time.Time) float64 {
	var part, all int
	for i := range bins {
		at := start.Add(time.Duration(i) * bin)
		if !at.Before(from) && at.Before(end) {
			part, all = part+parts[i], all+bins[i]
		}
	}
	if all == 0 {
		return math.NaN()
	}
	return float64(part) / float64(all)
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

// prometheusLine says how the lab's Prometheus ran, above its tables.
func prometheusLine(cfg config) string {
	return fmt.Sprintf("A Prometheus per scenario (%s, histograms scraped %s) scraped its kube-dns replicas every %s, all under server=%q, told apart by instance and pod, with deploy/monitoring/minttl-rules.yaml (windows %s); readings at the end of the run, over its last %s.\n\n",
		prometheusVersion(), histogramsText(cfg.histograms), cfg.prometheus, sharedServer, cfg.window, cfg.window)
}

// prometheusVersion is what the lab's Prometheus binary says it is.
var prometheusVersion = sync.OnceValue(func() string {
	binary, err := lab.PrometheusBinary()
	if err != nil {
		return "Prometheus missing"
	}
	out, _ := exec.Command(binary, "--version").Output()
	if m := regexp.MustCompile(`version (\S+)`).FindSubmatch(out); m != nil {
		return "Prometheus " + string(m[1])
	}
	return "Prometheus of unknown version"
})

func histogramsText(h lab.Histograms) string {
	return map[lab.Histograms]string{lab.Classic: "classic only", lab.NativeAndClassic: "native and classic", lab.Native: "native only"}[h]
}

// herdTable is the herd table: per scenario, what the operator sees.
func herdTable(cfg config, results []result) string {
	var b strings.Builder
	b.WriteString(runLine(cfg))
	b.WriteString(prometheusLine(cfg))
	b.WriteString("| scenario | proxies | replicas | herd factor (rule: fit over replicas) | per replica (rule) | lab: fit over replicas | lab: all replicas' seconds, p99 / mean (peak / mean) | busiest seconds (rule) | mean second per replica (rule) | zone q/s (rule) | requests/s over the run | MinttlDNSHerd fired | herd factor over " + promDuration(shortWindow(cfg)) + " first below the alert's " + fmt.Sprint(herdThreshold) + " | herd factor (rule) below " + fmt.Sprint(herdThreshold) + " from | replicas pooled, as the rules before issue 23: herd factor (mean second) |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--|--:|--:|--:|\n")
	for _, r := range results {
		h := r.Herd
		if h == nil {
			continue
		}
		var perReplica, means []string
		for _, rep := range h.Replicas {
			perReplica = append(perReplica, factorText(rep.HerdFactor))
			means = append(means, numberText(rep.MeanSecond))
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s | %s (%s) | %s | %s | %s | %.1f | %s | %s | %s | %s (%s) |\n",
			r.describe, r.Clients, r.Replicas, factorText(h.HerdFactor), strings.Join(perReplica, " · "), numberText(h.LabFit),
			numberText(h.LabP99), numberText(h.LabPeak), numberText(h.Busiest), strings.Join(means, " · "), numberText(h.ZoneRate),
			float64(h.RequestRate), firedText(h.Fired, h, cfg.prometheus), calmAtText(h, h.CalmAt1m), calmAtText(h, h.CalmAt),
			numberText(h.PooledFactor), numberText(h.PooledMean))
	}
	b.WriteString(health(results))
	return b.String()
}

// staleTable is MinttlStaleAnswers's input per scenario.
func staleTable(cfg config, results []result) string {
	var b strings.Builder
	b.WriteString(runLine(cfg))
	b.WriteString(prometheusLine(cfg))
	fmt.Fprintf(&b, "| scenario | proxies | replicas | queries answered stale (rule) | highest from %s on (rule) | before the failure (rule) | lab: answers past the zone's TTL | lab: before the failure | q/s per replica (rule) | zone q/s (rule) | MinttlStaleAnswers fired |\n", promDuration(cfg.window))
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--|\n")
	for _, r := range results {
		h := r.Herd
		if h == nil {
			continue
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.describe, r.Clients, r.Replicas, percentText(h.Stale), percentText(h.StaleMax), percentText(h.StaleAtFailure),
			percentText(h.LabStale), percentText(h.LabStaleBefore), numberText(h.ReplicaRate), numberText(h.ZoneRate), firedText(h.StaleFired, h, cfg.prometheus))
	}
	b.WriteString(health(results))
	return b.String()
}

func factorText(r reading) string {
	if math.IsNaN(float64(r)) {
		return "– (no minttl)"
	}
	return numberText(r)
}

func numberText(r reading) string {
	if v := float64(r); math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	return fmt.Sprintf("%.1f", float64(r))
}

func percentText(r reading) string {
	if v := float64(r); math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	return fmt.Sprintf("%.1f %%", 100*float64(r))
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

// firedText says when an alert fired; one that fired in the last scrape
// interval (step) was still firing at the end.
func firedText(a alertTimes, h *herdReading, step time.Duration) string {
	switch {
	case !a.Fired:
		return "no"
	case a.Until >= (h.end.Sub(h.start) - step).Seconds():
		return fmt.Sprintf("from %.0f s to the end", a.From)
	}
	return fmt.Sprintf("from %.0f s to %.0f s", a.From, a.Until)
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
		fmt.Fprintf(&b, `<text x="5" y="%.0f" fill="#555">at the end %s; alert %s</text>`+"\n", y0-lane/2+26, factorText(h.HerdFactor), firedText(h.Fired, h, cfg.prometheus))
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
