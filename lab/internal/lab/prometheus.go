package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// PrometheusEnv names the Prometheus binary the lab runs; make sets it to
// .bin/prometheus/prometheus (make prometheus builds it, lab/prometheus).
const PrometheusEnv = "MINTTL_PROMETHEUS"

// PrometheusBinary is $MINTTL_PROMETHEUS, or .bin/prometheus/prometheus at
// the top of the checkout the working directory is in. A missing binary is an
// error: the lab never falls back to another Prometheus.
func PrometheusBinary() (string, error) {
	path := os.Getenv(PrometheusEnv)
	if path == "" {
		top, err := checkoutTop()
		if err != nil {
			return "", fmt.Errorf("no Prometheus (set %s, or make prometheus in the checkout): %w", PrometheusEnv, err)
		}
		path = filepath.Join(top, ".bin", "prometheus", "prometheus")
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("Prometheus missing (make prometheus builds it): %w", err)
	}
	return filepath.Abs(path)
}

// checkoutTop is the nearest folder up from the working directory that holds
// lab/prometheus/build.
func checkoutTop() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "lab", "prometheus", "build")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("not in a minttl checkout")
		}
		dir = up
	}
}

// Histograms is what a Prometheus keeps of a histogram exposed both ways, as
// CoreDNS's are (classic buckets and a native bucket factor).
type Histograms int

const (
	// Classic: the _bucket, _sum and _count series only, Prometheus's default.
	Classic Histograms = iota
	// NativeAndClassic: the native histogram and the classic series beside it
	// (scrape_native_histograms and always_scrape_classic_histograms).
	NativeAndClassic
	// Native: the native histogram only (scrape_native_histograms); the
	// classic series are not ingested.
	Native
)

func (h Histograms) String() string {
	return [...]string{"classic", "native_and_classic", "native"}[h]
}

// globalConfig is the part of the global section that sets h. Prometheus 3.16
// scrapes native histograms only with scrape_native_histograms (the feature
// flag native-histograms is a no-op there), and with it asks targets for
// protobuf first, the one exposition that carries them; a histogram exposed
// both ways then loses its classic series unless
// always_scrape_classic_histograms keeps them. Classic writes nothing, so any
// Prometheus runs it.
func (h Histograms) globalConfig() string {
	switch h {
	case NativeAndClassic:
		return "  scrape_native_histograms: true\n  always_scrape_classic_histograms: true\n"
	case Native:
		return "  scrape_native_histograms: true\n"
	}
	return ""
}

// PrometheusOptions say how the lab's Prometheus scrapes and evaluates.
type PrometheusOptions struct {
	Interval   time.Duration // scrape and rule evaluation
	Rules      []string      // rule files
	Histograms Histograms
	// SharedServer is the server label that every series of a target group
	// scraped with TargetGroup.SharedServer carries instead of its own:
	// dns://:53 when empty, what every kube-dns replica exports in a cluster.
	SharedServer string
}

// TargetGroup is targets scraped with the same labels.
type TargetGroup struct {
	Targets []string          // host:port of /metrics endpoints
	Labels  map[string]string // on every series, as Kubernetes service discovery leaves pod, namespace, job
	// SharedServer rewrites the server label of every series the targets
	// export to PrometheusOptions.SharedServer, so replicas that each listen
	// on a port of their own read back as a cluster's replicas do: one
	// server label, told apart by instance (and pod).
	SharedServer bool
}

// Prometheus is a Prometheus server on loopback that scrapes the targets
// the lab hands it (file service discovery) and evaluates rule files.
type Prometheus struct {
	*Process
	Addr    string            // host:port of its HTTP API
	Options PrometheusOptions // as started, SharedServer filled in
	sd      string            // the folder of its target files
}

// StartPrometheus starts the lab's Prometheus (PrometheusBinary) in dir.
func StartPrometheus(ctx context.Context, dir string, o PrometheusOptions) (*Prometheus, error) {
	binary, err := PrometheusBinary()
	if err != nil {
		return nil, err
	}
	if o.SharedServer == "" {
		o.SharedServer = "dns://:53"
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	p := &Prometheus{Addr: "127.0.0.1:" + port, Options: o, sd: filepath.Join(dir, "targets")}
	for _, sub := range []string{"own", "shared"} {
		if err := os.MkdirAll(filepath.Join(p.sd, sub), 0o755); err != nil {
			return nil, err
		}
	}
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(prometheusConfig(o, p.sd)), 0o644); err != nil {
		return nil, err
	}
	p.Process, err = Start(ctx, filepath.Join(dir, "prometheus.log"), nil, binary,
		"--config.file="+config, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+p.Addr, "--log.level=warn")
	if err != nil {
		return nil, err
	}
	if err := p.waitReady(ctx); err != nil {
		p.Stop()
		out, _ := os.ReadFile(p.Log)
		return nil, fmt.Errorf("prometheus: %w:\n%s", err, out)
	}
	return p, nil
}

// prometheusConfig has two jobs that differ only in the server label: the
// target groups in sd/own keep their own, those in sd/shared get o.SharedServer
// on every series that has a server label. Relabelling rules belong to a job;
// a label of the group's to key them on would stay on up and scrape_*, which
// metric relabelling never sees, so the group's side is its job (the job
// label itself is the group's: ScrapeGroups).
func prometheusConfig(o PrometheusOptions, sd string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\n%s", o.Interval, o.Interval, o.Histograms.globalConfig())
	if len(o.Rules) > 0 {
		b.WriteString("rule_files:\n")
		for _, r := range o.Rules {
			fmt.Fprintf(&b, "- %q\n", r)
		}
	}
	b.WriteString("scrape_configs:\n")
	fmt.Fprintf(&b, "- job_name: coredns\n  file_sd_configs:\n  - files: [%q]\n", filepath.Join(sd, "own", "*.json"))
	fmt.Fprintf(&b, "- job_name: coredns-shared-server\n  file_sd_configs:\n  - files: [%q]\n", filepath.Join(sd, "shared", "*.json"))
	fmt.Fprintf(&b, "  metric_relabel_configs:\n  - source_labels: [server]\n    regex: '.+'\n    target_label: server\n    replacement: %q\n", o.SharedServer)
	return b.String()
}

func (p *Prometheus) waitReady(ctx context.Context) error {
	for range 300 {
		resp, err := http.Get("http://" + p.Addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.Exited:
			return errors.New("exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("not ready after 30 s")
}

// Scrape has Prometheus scrape targets (host:port of a /metrics endpoint)
// from now on, with labels on every series; name names the target group.
func (p *Prometheus) Scrape(name string, targets []string, labels map[string]string) error {
	return p.ScrapeGroups(name, TargetGroup{Targets: targets, Labels: labels})
}

// ScrapeGroups has Prometheus scrape the groups from now on, in place of
// what an earlier call of the same name had it scrape. A group without a job
// label reads job="coredns".
func (p *Prometheus) ScrapeGroups(name string, groups ...TargetGroup) error {
	files := map[string][]map[string]any{"own": {}, "shared": {}}
	for _, g := range groups {
		labels := map[string]string{"job": "coredns"}
		for k, v := range g.Labels {
			labels[k] = v
		}
		sub := "own"
		if g.SharedServer {
			sub = "shared"
		}
		files[sub] = append(files[sub], map[string]any{"targets": g.Targets, "labels": labels})
	}
	// Both files are written, the empty one too, so a group that changed
	// sides leaves none behind.
	for sub, list := range files {
		if err := p.writeTargets(filepath.Join(p.sd, sub), name, list); err != nil {
			return err
		}
	}
	return nil
}

// writeTargets writes dir/name.json whole, then renames it: Prometheus never
// reads half a file.
func (p *Prometheus) writeTargets(dir, name string, groups []map[string]any) error {
	text, err := json.Marshal(groups)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, text, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name+".json"))
}

// Sample is one series of a query's answer at one instant: a number, or a
// native histogram (then Value is NaN).
type Sample struct {
	Labels    map[string]string
	Value     float64
	Histogram *Histogram
}

// Histogram is a native histogram as the HTTP API sends it.
type Histogram struct {
	Count, Sum float64
	Buckets    []Bucket // the buckets that are not empty, in order
}

// Bucket is one bucket of a native histogram: Count observations between
// Lower and Upper.
type Bucket struct {
	Lower, Upper, Count float64
}

// Query evaluates expr at the instant at.
func (p *Prometheus) Query(ctx context.Context, expr string, at time.Time) ([]Sample, error) {
	var result []struct {
		Metric    map[string]string `json:"metric"`
		Value     []any             `json:"value"`
		Histogram []any             `json:"histogram"`
	}
	q := url.Values{"query": {expr}, "time": {timestamp(at)}}
	if err := p.api(ctx, "query", q, &result); err != nil {
		return nil, err
	}
	out := make([]Sample, 0, len(result))
	for _, r := range result {
		_, v, h, err := point(r.Value, r.Histogram)
		if err != nil {
			return nil, fmt.Errorf("query %s: %w", expr, err)
		}
		out = append(out, Sample{Labels: r.Metric, Value: v, Histogram: h})
	}
	return out, nil
}

// Series is one series of a range query: a value every step, or a native
// histogram (then Values holds NaN and Histograms the histogram; Histograms
// is nil for a series of numbers alone).
type Series struct {
	Labels     map[string]string
	Times      []time.Time
	Values     []float64
	Histograms []*Histogram
}

// QueryRange evaluates expr every step from start to end.
func (p *Prometheus) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]Series, error) {
	var result []struct {
		Metric     map[string]string `json:"metric"`
		Values     [][]any           `json:"values"`
		Histograms [][]any           `json:"histograms"`
	}
	q := url.Values{"query": {expr}, "start": {timestamp(start)}, "end": {timestamp(end)}, "step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}}
	if err := p.api(ctx, "query_range", q, &result); err != nil {
		return nil, err
	}
	out := make([]Series, 0, len(result))
	for _, r := range result {
		type timed struct {
			at time.Time
			v  float64
			h  *Histogram
		}
		var points []timed
		for _, pair := range r.Values {
			at, v, _, err := point(pair, nil)
			if err != nil {
				return nil, fmt.Errorf("query_range %s: %w", expr, err)
			}
			points = append(points, timed{at, v, nil})
		}
		for _, pair := range r.Histograms {
			at, v, h, err := point(nil, pair)
			if err != nil {
				return nil, fmt.Errorf("query_range %s: %w", expr, err)
			}
			points = append(points, timed{at, v, h})
		}
		sort.SliceStable(points, func(i, j int) bool { return points[i].at.Before(points[j].at) })
		s := Series{Labels: r.Metric}
		for _, pt := range points {
			s.Times = append(s.Times, pt.at)
			s.Values = append(s.Values, pt.v)
			if len(r.Histograms) > 0 {
				s.Histograms = append(s.Histograms, pt.h)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// point decodes [time, "value"] or, when value is nil, [time, {histogram}].
func point(value, histogram []any) (time.Time, float64, *Histogram, error) {
	pair := value
	if pair == nil {
		pair = histogram
	}
	if len(pair) != 2 {
		return time.Time{}, 0, nil, fmt.Errorf("a sample %v", pair)
	}
	seconds, ok := pair[0].(float64)
	if !ok {
		return time.Time{}, 0, nil, fmt.Errorf("a sample's time %v", pair[0])
	}
	at := time.Unix(0, int64(seconds*1e9))
	if value != nil {
		v, err := number(pair[1])
		return at, v, nil, err
	}
	h, err := decodeHistogram(pair[1])
	return at, math.NaN(), h, err
}

// decodeHistogram reads {"count": "N", "sum": "S", "buckets": [[boundaries,
// "lower", "upper", "count"], ...]} (Prometheus's util/jsonutil).
func decodeHistogram(v any) (*Histogram, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("a histogram %v", v)
	}
	var h Histogram
	var err error
	if h.Count, err = number(m["count"]); err != nil {
		return nil, fmt.Errorf("a histogram's count: %w", err)
	}
	if h.Sum, err = number(m["sum"]); err != nil {
		return nil, fmt.Errorf("a histogram's sum: %w", err)
	}
	buckets, _ := m["buckets"].([]any)
	for _, b := range buckets {
		fields, ok := b.([]any)
		if !ok || len(fields) != 4 {
			return nil, fmt.Errorf("a histogram bucket %v", b)
		}
		var bucket Bucket
		for i, f := range []*float64{&bucket.Lower, &bucket.Upper, &bucket.Count} {
			if *f, err = number(fields[i+1]); err != nil {
				return nil, fmt.Errorf("a histogram bucket %v: %w", b, err)
			}
		}
		h.Buckets = append(h.Buckets, bucket)
	}
	return &h, nil
}

// Targets counts the targets Prometheus scrapes that are up.
func (p *Prometheus) Targets(ctx context.Context) (up int, err error) {
	var data struct {
		Active []struct {
			Health string `json:"health"`
		} `json:"activeTargets"`
	}
	if err := p.api(ctx, "targets", url.Values{"state": {"active"}}, &data); err != nil {
		return 0, err
	}
	for _, t := range data.Active {
		if t.Health == "up" {
			up++
		}
	}
	return up, nil
}

// api calls the HTTP API at /api/v1/path and decodes its data into out.
func (p *Prometheus) api(ctx context.Context, path string, q url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Addr+"/api/v1/"+path+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("%s %s: %w", path, q.Get("query"), err)
	}
	if body.Status != "success" {
		return fmt.Errorf("%s %s: %s", path, q.Get("query"), body.Error)
	}
	var result struct {
		Result json.RawMessage `json:"result"`
	}
	if path == "targets" {
		return json.Unmarshal(body.Data, out)
	}
	if err := json.Unmarshal(body.Data, &result); err != nil {
		return err
	}
	return json.Unmarshal(result.Result, out)
}

func timestamp(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixNano())/1e9, 'f', 3, 64)
}

// number reads a sample value, which the API sends as a string ("NaN", "+Inf" too).
func number(v any) (float64, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("sample value %v is not a string", v)
	}
	return strconv.ParseFloat(s, 64)
}
