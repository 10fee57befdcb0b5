package deploy

// The herd rules of deploy/monitoring as a cluster's Prometheus runs them:
// kube-dns replicas that all export server="dns://:53" and differ only in
// instance, scraped every 30 s, fed to promtool as classic histograms, as
// native ones, and as both (a Prometheus that keeps the classic series
// beside the native ones). Each scenario is a zone whose replicas' seconds
// are drawn here: herds (every query of a period in one second), and even
// loads whose seconds are Poisson counts, which bunch more than clients spread
// by minttl or started apart do. The expected outcome of each scenario (the
// alert fires or stays quiet, the herd factor's range) is written beside it;
// what the rules read is logged (go test -run TestHerdRules -v).

import (
	"bufio"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const (
	scrapeInterval = 30 // seconds, as kube-prometheus scrapes
	herdRunMinutes = 30 // of simulated time per scenario
	herdRunSeconds = herdRunMinutes * 60
	cluster        = `dns://:53` // the server label every replica exports in a pod
	nativeSchema   = 4           // client_golang's schema for NativeHistogramBucketFactor 1.05
)

// replica is one kube-dns pod's view of a zone: its query count in every
// second of the run, while it runs.
type replica struct {
	instance string
	seconds  []int
	from, to int // the pod is scraped in [from, to) (seconds); to 0: to the end
	resetAt  int // its process restarted at this second (counters from 0); 0: never
}

// herdScenario is a zone with its replicas and what the rules must say of it.
type herdScenario struct {
	name     string
	replicas []replica
	fires    bool
	// the 5-minute herd factor's range at the end of the run; 0, 0: not checked
	low, high float64
	// times (minutes) at which the alert must be firing, beside the end
	firingAt []int
}

func (s herdScenario) zone() string { return s.name + ".test." }

// herd: queries come back together every period seconds, each query to a
// replica picked at random with the weights given (kube-proxy's spread, or a
// skew).
func herd(rng *rand.Rand, queries, period int, weights ...float64) [][]int {
	out := make([][]int, len(weights))
	for r := range out {
		out[r] = make([]int, herdRunSeconds)
	}
	for s := 0; s < herdRunSeconds; s += period {
		for range queries {
			out[pick(rng, weights)][s]++
		}
	}
	return out
}

// decayingHerd: each replica's cache item decays on its own, so each replica
// has a herd of its own every period seconds, at its own phase.
func decayingHerd(rng *rand.Rand, perSecond float64, period, replicas int) [][]int {
	out := make([][]int, replicas)
	for r := range out {
		out[r] = make([]int, herdRunSeconds)
		phase := rng.IntN(period)
		for s := phase; s < herdRunSeconds; s += period {
			out[r][s] = poisson(rng, perSecond*float64(period)/float64(replicas))
		}
	}
	return out
}

// even: every replica gets a Poisson count each second, at rate × its share.
func even(rng *rand.Rand, rate float64, weights ...float64) [][]int {
	total := 0.0
	for _, w := range weights {
		total += w
	}
	out := make([][]int, len(weights))
	for r, w := range weights {
		out[r] = make([]int, herdRunSeconds)
		for s := range out[r] {
			out[r][s] = poisson(rng, rate*w/total)
		}
	}
	return out
}

func pick(rng *rand.Rand, weights []float64) int {
	total := 0.0
	for _, w := range weights {
		total += w
	}
	x := rng.Float64() * total
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return len(weights) - 1
}

// poisson draws from a Poisson distribution of mean lambda (Knuth; the
// means here are at most a few hundred, drawn in steps of 30).
func poisson(rng *rand.Rand, lambda float64) int {
	n := 0
	for lambda > 30 {
		n += poisson(rng, 30)
		lambda -= 30
	}
	limit, p := math.Exp(-lambda), rng.Float64()
	for p > limit {
		n++
		p *= rng.Float64()
	}
	return n
}

func equal(n int) []float64 {
	w := make([]float64, n)
	for i := range w {
		w[i] = 1
	}
	return w
}

// pods names the seconds as replicas scraped for the whole run.
func pods(prefix string, seconds [][]int) []replica {
	out := make([]replica, len(seconds))
	for i, s := range seconds {
		out[i] = replica{instance: fmt.Sprintf("10.244.%s.%d:9153", prefix, i+10), seconds: s}
	}
	return out
}

// rollout replaces every pod at minute at: the old ones are scraped until
// then, their successors (new instances) from a minute before.
func rollout(seconds [][]int, at int) []replica {
	old, successors := pods("1", seconds), pods("2", seconds)
	for i := range old {
		old[i].to = at * 60
		successors[i].from = (at - 1) * 60
	}
	return append(old, successors...)
}

func quiet() []int { return make([]int, herdRunSeconds) }

// The herd of the storm lab: 200 Linkerd proxies × 2 names on kubeadm's ttl
// 30, all back in one second of every 30: 13.3 queries a second.
const labHerd, labPeriod = 400, 30

func herdScenarios() []herdScenario {
	rng := rand.New(rand.NewPCG(1, 2))
	var out []herdScenario
	for _, n := range []int{1, 2, 3, 5, 10, 30} {
		out = append(out, herdScenario{name: fmt.Sprintf("herd-%d-replicas", n), replicas: pods("1", herd(rng, labHerd, labPeriod, equal(n)...)), fires: true, low: 20, high: 45})
	}
	restarted := pods("1", herd(rng, labHerd, labPeriod, equal(3)...))
	restarted[1].resetAt = 12*60 + 7
	noZone := pods("1", append(herd(rng, labHerd, labPeriod, equal(3)...), quiet()))
	out = append(out,
		herdScenario{name: "herd-skewed-10-1-1-1", replicas: pods("1", herd(rng, labHerd, labPeriod, 10, 1, 1, 1)), fires: true, low: 20, high: 45},
		herdScenario{name: "herd-replica-restarts", replicas: restarted, fires: true, low: 20, high: 45, firingAt: []int{13, 20}},
		herdScenario{name: "herd-replica-without-zone", replicas: noZone, fires: true, low: 20, high: 45},
		herdScenario{name: "herd-rollout", replicas: rollout(herd(rng, labHerd, labPeriod, equal(3)...), 18), fires: true, low: 20, high: 45, firingAt: []int{15, 17, 18, 19, 22, 25}},
		// cache 30 in front of a TTL of 5: each replica's item decays on its own.
		herdScenario{name: "cache-herd-3-replicas", replicas: pods("1", decayingHerd(rng, 80, 5, 3)), fires: true, low: 3.2, high: 8},
		// 50 proxies: 100 queries every 30 s, 3.3 a second.
		herdScenario{name: "small-herd", replicas: pods("1", herd(rng, 100, labPeriod, equal(2)...)), fires: false},
	)
	for _, n := range []int{1, 2, 3, 5, 10} {
		s := herdScenario{name: fmt.Sprintf("even-%d-replicas", n), replicas: pods("1", even(rng, 400.0/labPeriod, equal(n)...))}
		if n <= 3 {
			// Over more replicas each has 2.7 queries a second and fewer:
			// the herd factor reads chance, and the alert's gates hold.
			s.low, s.high = 1, 2.6
		}
		out = append(out, s)
	}
	evenRestarted := pods("1", even(rng, 13.3, equal(3)...))
	evenRestarted[2].resetAt = 9*60 + 11
	out = append(out,
		herdScenario{name: "even-skewed-40-4-4-4", replicas: pods("1", even(rng, 52, 10, 1, 1, 1)), low: 1, high: 2.6},
		herdScenario{name: "even-skewed-26-2.6-2.6-2.6", replicas: pods("1", even(rng, 33.8, 10, 1, 1, 1)), low: 1, high: 2.6},
		herdScenario{name: "even-replica-restarts", replicas: evenRestarted, low: 1, high: 2.6},
		herdScenario{name: "even-replica-without-zone", replicas: pods("1", append(even(rng, 13.3, equal(3)...), quiet())), low: 1, high: 2.6},
		herdScenario{name: "even-rollout", replicas: rollout(even(rng, 13.3, equal(3)...), 18), low: 1, high: 2.6},
	)
	// Even loads from 5 to 100 queries a second, split every way: the alert
	// stays quiet whatever chance makes of the light replicas' seconds.
	splits := map[string][]float64{
		"1": equal(1), "2": equal(2), "3": equal(3), "5": equal(5), "10": equal(10), "20": equal(20),
		"10-1-1-1":              {10, 1, 1, 1},
		"half-on-1-half-on-9":   {9, 1, 1, 1, 1, 1, 1, 1, 1, 1},
		"3-busy-7-without-zone": {1, 1, 1, 0, 0, 0, 0, 0, 0, 0},
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range splits {
			if !yield(k) {
				return
			}
		}
	})
	for _, rate := range []float64{5.5, 8, 13.3, 40} {
		for _, k := range keys {
			out = append(out, herdScenario{name: fmt.Sprintf("sweep-%g-per-s-split-%s", rate, k), replicas: pods("1", even(rng, rate, splits[k]...))})
		}
	}
	return out
}

// histogramMode is how Prometheus stores the histogram it scrapes.
type histogramMode struct {
	name            string
	classic, native bool
	// custom: the classic buckets as one native histogram of custom
	// buckets (convert_classic_histograms_to_nhcb)
	custom bool
}

var histogramModes = []histogramMode{
	{name: "classic", classic: true},
	{name: "native-and-classic", classic: true, native: true},
	{name: "native", native: true},
	{name: "classic-as-custom-buckets", custom: true},
}

func TestHerdRules(t *testing.T) {
	bounds := bucketBounds(t)
	scenarios := herdScenarios()
	rules, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	table := os.Getenv("MINTTL_HERD_RULES_TABLE") // make herd-rules writes it for docs/monitoring.md
	readings := map[string]map[string]reading{}
	for _, mode := range histogramModes {
		t.Run(mode.name, func(t *testing.T) {
			dir := t.TempDir()
			test := filepath.Join(dir, "herd.test.yaml")
			if err := os.WriteFile(test, []byte(herdTests(rules, scenarios, bounds, mode)), 0o644); err != nil {
				t.Fatal(err)
			}
			if testing.Verbose() || table != "" {
				readings[mode.name] = probe(t, rules, scenarios, bounds, mode, dir)
			}
			promtool(t, "test", "rules", test)
		})
	}
	if table != "" && !t.Failed() {
		if err := os.WriteFile(table, []byte(readingsTable(scenarios, readings, promtoolVersion(t))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// reading is what the rules said of a zone at the end of its run.
type reading struct{ factor, busiest float64 }

func (r reading) String() string { return fmt.Sprintf("%.1f / %.0f", r.factor, r.busiest) }

// readingsTable is the markdown table of what the rules read, the sweep of
// even loads summed up in one line.
func readingsTable(scenarios []herdScenario, readings map[string]map[string]reading, version string) string {
	var b strings.Builder
	b.WriteString("Made by `make herd-rules` (deploy/herd_rules_test.go, promtool " + version + ").\n\n")
	b.WriteString("| scenario | replicas | MinttlDNSHerd | classic | native and classic | native only | classic as custom buckets |\n|---|--:|---|--:|--:|--:|--:|\n")
	var sweep []herdScenario
	for _, s := range scenarios {
		if strings.HasPrefix(s.name, "sweep-") {
			sweep = append(sweep, s)
			continue
		}
		verdict := "quiet"
		if s.fires {
			verdict = "fires"
		}
		fmt.Fprintf(&b, "| %s | %d | %s |", s.name, len(s.replicas), verdict)
		for _, mode := range histogramModes {
			fmt.Fprintf(&b, " %s |", readings[mode.name][s.zone()])
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "| %d even loads, 5.5 to 40 queries a second, split every way over 1 to 20 replicas | 1-20 | quiet |", len(sweep))
	for _, mode := range histogramModes {
		var chance, busy reading // the highest herd factor; the highest where the busiest seconds reach 10
		for _, s := range sweep {
			r := readings[mode.name][s.zone()]
			if r.factor > chance.factor {
				chance = r
			}
			if r.busiest >= 10 && r.factor > busy.factor {
				busy = r
			}
		}
		fmt.Fprintf(&b, " up to %s; %s where busiest ≥ 10 |", chance, busy)
	}
	b.WriteString("\n\nEach cell: the herd factor (`server_zone:coredns_minttl_queries_per_second:herd_factor5m`) / the busiest seconds (`server_zone:coredns_minttl_queries_per_second:p99_5m`) at the end of 30 minutes scraped every 30 s; the alert's verdict was checked in every mode.\n")
	return b.String()
}

func promtoolVersion(t *testing.T) string {
	out, _ := exec.Command(promtoolPath(t), "--version").Output()
	if f := strings.Fields(string(out)); len(f) >= 3 {
		return f[2]
	}
	return "?"
}

// bucketBounds are the le labels of coredns_minttl_queries_per_second as the
// image's CoreDNS exports them, +Inf last.
func bucketBounds(t *testing.T) []string {
	t.Helper()
	w := newTwin(t)
	w.zoneFile = "zone"
	s := start(t, deployed(t)["kubeadm"], w)
	s.ask(t, "127.0.0.1", "udp", 33, linkerdSRV) // SRV
	resp, err := http.Get("http://127.0.0.1:" + w.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	le := regexp.MustCompile(`^coredns_minttl_queries_per_second_bucket\{.*le="([^"]+)"`)
	var bounds []string
	seen := map[string]bool{}
	for sc := bufio.NewScanner(resp.Body); sc.Scan(); {
		if m := le.FindStringSubmatch(sc.Text()); m != nil && !seen[m[1]] {
			seen[m[1]] = true
			bounds = append(bounds, m[1])
		}
	}
	if len(bounds) < 10 || bounds[len(bounds)-1] != "+Inf" {
		t.Fatalf("buckets of coredns_minttl_queries_per_second: %v", bounds)
	}
	return bounds
}

// inputSeries is promtool's input_series for scenario s in mode.
func inputSeries(s herdScenario, bounds []string, mode histogramMode) string {
	var b strings.Builder
	for _, r := range s.replicas {
		labels := fmt.Sprintf(`instance=%q,job="kube-dns",server=%q,zone=%q`, r.instance, cluster, s.zone())
		scrapes := r.scrapes()
		if mode.classic {
			classicSeries(&b, labels, scrapes, bounds)
		}
		if mode.native {
			nativeSeries(&b, labels, scrapes)
		}
		if mode.custom {
			customSeries(&b, labels, scrapes, bounds)
		}
	}
	return b.String()
}

// scrape is what one scrape of a replica reads: the seconds observed since
// its process started, or nothing (not scraped; stale after the pod is gone).
type scrape struct {
	seconds []int
	absent  bool
	stale   bool
}

func (r replica) scrapes() []scrape {
	to := r.to
	if to == 0 {
		to = herdRunSeconds + 1
	}
	var out []scrape
	for at := 0; at <= herdRunSeconds; at += scrapeInterval {
		switch {
		case at < r.from:
			out = append(out, scrape{absent: true})
		case at >= to:
			out = append(out, scrape{stale: true})
		default:
			start := r.from
			if r.resetAt > 0 && at >= r.resetAt {
				start = r.resetAt
			}
			out = append(out, scrape{seconds: r.seconds[start:at]})
		}
	}
	return out
}

func classicSeries(b *strings.Builder, labels string, scrapes []scrape, bounds []string) {
	top := 0
	for _, s := range scrapes {
		for _, n := range s.seconds {
			top = max(top, n)
		}
	}
	for _, le := range bounds {
		limit := math.Inf(1)
		if le != "+Inf" {
			limit, _ = strconv.ParseFloat(le, 64)
		}
		series(b, fmt.Sprintf("coredns_minttl_queries_per_second_bucket{%s,le=%q}", labels, le), scrapes, func(seconds []int) string {
			n := 0
			for _, c := range seconds {
				if float64(c) <= limit {
					n++
				}
			}
			return strconv.Itoa(n)
		})
		// The buckets above the busiest second hold what +Inf holds: leave them out.
		if le != "+Inf" && limit >= float64(top) {
			series(b, fmt.Sprintf("coredns_minttl_queries_per_second_bucket{%s,le=\"+Inf\"}", labels), scrapes, func(seconds []int) string { return strconv.Itoa(len(seconds)) })
			break
		}
	}
	series(b, fmt.Sprintf("coredns_minttl_queries_per_second_count{%s}", labels), scrapes, func(seconds []int) string { return strconv.Itoa(len(seconds)) })
	series(b, fmt.Sprintf("coredns_minttl_queries_per_second_sum{%s}", labels), scrapes, func(seconds []int) string { return strconv.Itoa(total(seconds)) })
}

// nativeSeries writes the histogram as client_golang exposes it natively:
// quiet seconds in the zero bucket, a count n in the bucket of index
// ceil(16 log2 n) at schema 4.
func nativeSeries(b *strings.Builder, labels string, scrapes []scrape) {
	series(b, fmt.Sprintf("coredns_minttl_queries_per_second{%s}", labels), scrapes, func(seconds []int) string {
		zero, buckets := 0, map[int]int{}
		for _, n := range seconds {
			if n == 0 {
				zero++
				continue
			}
			buckets[int(math.Ceil(nativeSchemaScale*math.Log2(float64(n))))]++
		}
		text := fmt.Sprintf("{{schema:%d sum:%d count:%d z_bucket:%d z_bucket_w:%g", nativeSchema, total(seconds), len(seconds), zero, math.Ldexp(1, -128))
		if len(buckets) > 0 {
			keys := slices.Sorted(func(yield func(int) bool) {
				for k := range buckets {
					if !yield(k) {
						return
					}
				}
			})
			counts := make([]string, 0, keys[len(keys)-1]-keys[0]+1)
			for k := keys[0]; k <= keys[len(keys)-1]; k++ {
				counts = append(counts, strconv.Itoa(buckets[k]))
			}
			text += fmt.Sprintf(" offset:%d buckets:[%s]", keys[0], strings.Join(counts, " "))
		}
		return text + "}}"
	})
}

const nativeSchemaScale = 1 << nativeSchema

// customSeries writes the classic buckets as Prometheus converts them into a
// native histogram with custom buckets (schema -53): bucket i holds the
// seconds above bound i-1 up to bound i, the last one those above every bound.
func customSeries(b *strings.Builder, labels string, scrapes []scrape, bounds []string) {
	finite := bounds[:len(bounds)-1] // without +Inf
	limits := make([]float64, len(finite))
	for i, le := range finite {
		limits[i], _ = strconv.ParseFloat(le, 64)
	}
	series(b, fmt.Sprintf("coredns_minttl_queries_per_second{%s}", labels), scrapes, func(seconds []int) string {
		counts := make([]int, len(limits)+1)
		top := 0
		for _, n := range seconds {
			i, _ := slices.BinarySearch(limits, float64(n))
			counts[i]++
			top = max(top, i)
		}
		text := make([]string, top+1)
		for i := range text {
			text[i] = strconv.Itoa(counts[i])
		}
		return fmt.Sprintf("{{schema:-53 sum:%d count:%d custom_values:[%s] buckets:[%s]}}", total(seconds), len(seconds), strings.Join(finite, " "), strings.Join(text, " "))
	})
}

func series(b *strings.Builder, name string, scrapes []scrape, value func([]int) string) {
	fmt.Fprintf(b, "  - series: '%s'\n    values: '", name)
	for i, s := range scrapes {
		if i > 0 {
			b.WriteByte(' ')
		}
		switch {
		case s.absent:
			b.WriteByte('_')
		case s.stale:
			b.WriteString("stale")
		default:
			b.WriteString(value(s.seconds))
		}
	}
	b.WriteString("'\n")
}

func total(seconds []int) int {
	n := 0
	for _, c := range seconds {
		n += c
	}
	return n
}

// herdTests is the promtool test file, a test per scenario (each with a
// storage of its own): whether the alert fired and when, and the range of
// the herd factor at the end of the run.
func herdTests(rules string, scenarios []herdScenario, bounds []string, mode histogramMode) string {
	var b strings.Builder
	fmt.Fprintf(&b, "rule_files: [%q]\nevaluation_interval: %ds\ntests:\n", rules, scrapeInterval)
	for _, s := range scenarios {
		fmt.Fprintf(&b, "- name: %s\n  interval: %ds\n  input_series:\n%s  promql_expr_test:\n", s.name, scrapeInterval, inputSeries(s, bounds, mode))
		fired := "[]"
		if s.fires {
			fired = "\n    - labels: " + alertLabels("", s) + "\n      value: 1"
		}
		// Firing at any time of the run: only a herd meant to fire.
		fmt.Fprintf(&b, "  - expr: max_over_time(ALERTS{alertname=\"MinttlDNSHerd\",alertstate=\"firing\"}[%dm])\n    eval_time: %dm\n    exp_samples: %s\n", herdRunMinutes, herdRunMinutes, fired)
		for _, at := range s.firingAt {
			fmt.Fprintf(&b, "  - expr: ALERTS{alertname=\"MinttlDNSHerd\",alertstate=\"firing\"}\n    eval_time: %dm\n    exp_samples:\n    - labels: %s\n      value: 1\n", at, alertLabels("ALERTS", s))
		}
		if s.high > 0 {
			factor := "server_zone:coredns_minttl_queries_per_second:herd_factor5m"
			fmt.Fprintf(&b, "  - expr: (%s >= bool %g) * (%s <= bool %g)\n    eval_time: %dm\n    exp_samples:\n    - labels: '{server=%q,zone=%q}'\n      value: 1\n", factor, s.low, factor, s.high, herdRunMinutes, cluster, s.zone())
		}
	}
	return b.String()
}

func alertLabels(name string, s herdScenario) string {
	if name != "" {
		name = fmt.Sprintf("__name__=%q,", name)
	}
	return fmt.Sprintf("'{%salertname=\"MinttlDNSHerd\",alertstate=\"firing\",severity=\"warning\",server=%q,zone=%q}'", name, cluster, s.zone())
}

// probe has promtool evaluate the herd factor and the busiest seconds of
// every scenario at the end of the run, and returns them by zone as text:
// promtool prints what it got when it expected something else.
func probe(t *testing.T, rules string, scenarios []herdScenario, bounds []string, mode histogramMode, dir string) map[string]reading {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "rule_files: [%q]\nevaluation_interval: %ds\ntests:\n", rules, scrapeInterval)
	for _, s := range scenarios {
		fmt.Fprintf(&b, "- name: %s\n  interval: %ds\n  input_series:\n%s  promql_expr_test:\n", s.name, scrapeInterval, inputSeries(s, bounds, mode))
		for _, name := range []string{"herd_factor5m", "p99_5m"} {
			fmt.Fprintf(&b, "  - expr: server_zone:coredns_minttl_queries_per_second:%s\n    eval_time: %dm\n    exp_samples:\n    - labels: 'probe'\n      value: -1\n", name, herdRunMinutes)
		}
	}
	path := filepath.Join(dir, "probe.test.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(promtoolPath(t), "test", "rules", path).CombinedOutput()
	got := regexp.MustCompile(`expr: "server_zone:coredns_minttl_queries_per_second:(\w+)"|\{[^}]*zone="([^"]+)"\} ([-+0-9.eE]+|NaN)`)
	readings := map[string]reading{}
	rule := ""
	for _, m := range got.FindAllStringSubmatch(string(out), -1) {
		if m[1] != "" {
			rule = m[1]
			continue
		}
		v, _ := strconv.ParseFloat(m[3], 64)
		r := readings[m[2]]
		switch rule {
		case "herd_factor5m":
			r.factor = v
		case "p99_5m":
			r.busiest = v
		}
		readings[m[2]] = r
	}
	if len(readings) < len(scenarios) {
		t.Errorf("promtool printed readings of %d zones of %d:\n%s", len(readings), len(scenarios), out)
	}
	return readings
}
