package lab

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// TestPrometheus starts a real Prometheus that scrapes a /metrics endpoint
// every second and evaluates a rule, and reads both back through its API.
func TestPrometheus(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "lab_seconds_total %d\n", int(time.Since(start).Seconds()))
	})}
	go srv.Serve(l)
	defer srv.Close()
	dir := t.TempDir()
	rules := dir + "/rules.yaml"
	writeFile(t, rules, "groups:\n- name: lab\n  rules:\n  - record: lab:seconds:rate30s\n    expr: rate(lab_seconds_total[30s])\n")
	p, err := StartPrometheus(context.Background(), dir, PrometheusOptions{Interval: time.Second, Rules: []string{rules}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if err := p.Scrape("lab", []string{l.Addr().String()}, map[string]string{"scenario": "test"}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var got []Sample
	for i := 0; i < 200 && len(got) == 0; i++ {
		time.Sleep(100 * time.Millisecond)
		if got, err = p.Query(ctx, `lab:seconds:rate30s{scenario="test"}`, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 1 || got[0].Value <= 0 || got[0].Value > 2 {
		t.Fatalf("the recorded rate: %v, want one series near 1/s", got)
	}
	if up, err := p.Targets(ctx); err != nil || up != 1 {
		t.Errorf("targets up: %d, %v", up, err)
	}
	series, err := p.QueryRange(ctx, `lab_seconds_total`, start, time.Now(), time.Second)
	if err != nil || len(series) != 1 || len(series[0].Values) == 0 || series[0].Labels["scenario"] != "test" {
		t.Errorf("range query: %+v, %v", series, err)
	}
	if _, err := p.Query(ctx, `rate(`, time.Now()); err == nil {
		t.Error("a bad query gave no error")
	}
}

// TestPrometheusHistograms runs the lab's Prometheus in each mode against a
// histogram exposed both ways, as CoreDNS's are, and reads back what each
// keeps: classic, the _bucket series alone; native, the native histogram
// alone; both, both. In the mode that keeps both, two replicas exporting
// server labels of their own, scraped as a cluster's, read back one server
// label and two instances, while a group scraped as before keeps its own.
func TestPrometheusHistograms(t *testing.T) {
	for _, mode := range []Histograms{Classic, NativeAndClassic, Native} {
		t.Run(mode.String(), func(t *testing.T) {
			ctx := context.Background()
			p, err := StartPrometheus(ctx, t.TempDir(), PrometheusOptions{Interval: time.Second, Histograms: mode})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Stop()
			own := histogramTarget(t, "dns://127.0.0.1:1053")
			if err := p.Scrape("own", []string{own}, map[string]string{"scenario": "own"}); err != nil {
				t.Fatal(err)
			}
			classic, native := mode != Native, mode != Classic
			// Every series of one scrape lands at once: once the form
			// the mode keeps is there, so would be the one it drops.
			present := `lab_queries_per_second_count{scenario="own"}`
			if !classic {
				present = `lab_queries_per_second{scenario="own"}`
			}
			waitSeries(t, p, present, 2)
			checkForms(t, p, `{scenario="own"}`, classic, native)
			if mode == NativeAndClassic {
				checkSharedServer(t, p)
				measureQuantiles(t, p)
			}
		})
	}
}

// checkForms checks which forms of the histogram Prometheus kept for the
// series selected by matchers: classic (_bucket, _sum, _count) and native.
func checkForms(t *testing.T, p *Prometheus, matchers string, classic, native bool) {
	t.Helper()
	ctx := context.Background()
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		got, err := p.Query(ctx, "lab_queries_per_second"+suffix+matchers, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if classic != (len(got) > 0) {
			t.Errorf("%d series of lab_queries_per_second%s: classic series kept %v, want %v", len(got), suffix, len(got) > 0, classic)
		}
	}
	got, err := p.Query(ctx, "lab_queries_per_second"+matchers, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if native != (len(got) == 2) {
		t.Fatalf("native histograms: %+v; want 2 (zones herd and even): %v", got, native)
	}
	for _, s := range got {
		h := s.Histogram
		if h == nil || !math.IsNaN(s.Value) {
			t.Fatalf("%v: value %v, histogram %v; want a native histogram", s.Labels, s.Value, h)
		}
		// Both zones hold 300 seconds of 4,000 queries in all.
		if h.Count != 300 || h.Sum != 4000 || len(h.Buckets) == 0 {
			t.Errorf("%v: count %v, sum %v, %d buckets; want 300, 4000 and buckets", s.Labels, h.Count, h.Sum, len(h.Buckets))
		}
	}
	series, err := p.QueryRange(ctx, "lab_queries_per_second"+matchers, time.Now().Add(-3*time.Second), time.Now(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if native != (len(series) == 2) {
		t.Fatalf("native histograms over 3 s: %+v; want 2 series: %v", series, native)
	}
	for _, s := range series {
		if len(s.Histograms) != len(s.Times) || len(s.Times) == 0 {
			t.Fatalf("%v: %d histograms at %d times", s.Labels, len(s.Histograms), len(s.Times))
		}
		for i, h := range s.Histograms {
			if h == nil || h.Count != 300 || !math.IsNaN(s.Values[i]) {
				t.Errorf("%v at %v: histogram %+v, value %v; want a count of 300", s.Labels, s.Times[i], h, s.Values[i])
			}
		}
	}
}

// checkSharedServer scrapes two replicas that export server labels of their
// own as a cluster's (SharedServer), and a third as before.
func checkSharedServer(t *testing.T, p *Prometheus) {
	t.Helper()
	replica := func(server, pod string) TargetGroup {
		return TargetGroup{
			Targets:      []string{histogramTarget(t, server)},
			Labels:       map[string]string{"scenario": "cluster", "namespace": "kube-system", "pod": pod},
			SharedServer: true,
		}
	}
	if err := p.ScrapeGroups("cluster", replica("dns://127.0.0.1:2053", "coredns-a"), replica("dns://:2054", "coredns-b")); err != nil {
		t.Fatal(err)
	}
	got := waitSeries(t, p, `lab_queries_per_second_count{scenario="cluster",zone="herd"}`, 2)
	instances, pods := map[string]bool{}, map[string]bool{}
	for _, s := range got {
		if s.Labels["server"] != "dns://:53" || s.Labels["namespace"] != "kube-system" || s.Labels["job"] != "coredns" {
			t.Errorf("a replica's series: %v; want server dns://:53, namespace kube-system, job coredns", s.Labels)
		}
		instances[s.Labels["instance"]], pods[s.Labels["pod"]] = true, true
	}
	if len(instances) != 2 || !pods["coredns-a"] || !pods["coredns-b"] {
		t.Errorf("the replicas' series: %v; want two instances, pods coredns-a and coredns-b", got)
	}
	// The native histograms carry the shared label too.
	native := waitSeries(t, p, `lab_queries_per_second{scenario="cluster",zone="herd",server="dns://:53"}`, 2)
	if native[0].Histogram == nil {
		t.Errorf("%v: no native histogram", native[0])
	}
	own, err := p.Query(context.Background(), `lab_queries_per_second_count{scenario="own",zone="herd"}`, time.Now())
	if err != nil || len(own) != 1 || own[0].Labels["server"] != "dns://127.0.0.1:1053" {
		t.Errorf("the group scraped as before: %v, %v; want its own server label dns://127.0.0.1:1053", own, err)
	}
}

// measureQuantiles logs the herd factor (p99 over the mean second) of the
// herd and the even load as the classic and the native histogram read it,
// beside the data's own, and checks each quantile lies within its bucket's
// width of the data's p99: √2 for the classic buckets, 1.05 for the native.
func measureQuantiles(t *testing.T, p *Prometheus) {
	t.Helper()
	want := map[string]float64{"herd": 400, "even": 14} // the 297th of 300 seconds
	forms := []struct {
		name, p99, mean string
		width           float64
	}{
		{"classic", `histogram_quantile(0.99, sum by (zone, le) (lab_queries_per_second_bucket{scenario="own"}))`,
			`sum by (zone) (lab_queries_per_second_sum{scenario="own"}) / sum by (zone) (lab_queries_per_second_count{scenario="own"})`, math.Sqrt2},
		{"native", `histogram_quantile(0.99, sum by (zone) (lab_queries_per_second{scenario="own"}))`,
			`histogram_avg(sum by (zone) (lab_queries_per_second{scenario="own"}))`, 1.05},
	}
	for _, f := range forms {
		p99, mean := byZone(t, p, f.p99), byZone(t, p, f.mean)
		for _, zone := range []string{"herd", "even"} {
			t.Logf("%s %s: p99 %.2f (the data's %.0f), mean %.2f, herd factor %.2f", f.name, zone, p99[zone], want[zone], mean[zone], p99[zone]/mean[zone])
			if r := p99[zone] / want[zone]; !(r > 1/f.width && r < f.width) {
				t.Errorf("%s %s: p99 %.2f, the data's %.0f: more than a bucket (%.3f) apart", f.name, zone, p99[zone], want[zone], f.width)
			}
			if math.Abs(mean[zone]-4000.0/300) > 1e-9 {
				t.Errorf("%s %s: mean %v, want 13.33", f.name, zone, mean[zone])
			}
		}
	}
}

// byZone evaluates expr now and maps its values by zone.
func byZone(t *testing.T, p *Prometheus, expr string) map[string]float64 {
	t.Helper()
	got, err := p.Query(context.Background(), expr, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, s := range got {
		values[s.Labels["zone"]] = s.Value
	}
	if len(values) != 2 {
		t.Fatalf("%s: %+v; want the zones herd and even", expr, got)
	}
	return values
}

// waitSeries waits up to 30 s until expr returns n series, and returns them.
func waitSeries(t *testing.T, p *Prometheus, expr string, n int) []Sample {
	t.Helper()
	var got []Sample
	for range 300 {
		var err error
		if got, err = p.Query(context.Background(), expr, time.Now()); err != nil {
			t.Fatal(err)
		}
		if len(got) == n {
			sort.Slice(got, func(i, j int) bool { return got[i].Labels["instance"] < got[j].Labels["instance"] })
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: %d series after 30 s, want %d", expr, len(got), n)
	return nil
}

// histogramTarget serves, on a port of loopback until the test ends, one
// histogram exposed both ways as CoreDNS's are (classic buckets √2 apart and
// NativeHistogramBucketFactor 1.05), under the server label given: zone
// "herd" holds 300 seconds with 400 queries in one of every 30 and none in the
// others, zone "even" 300 seconds of 13 or 14 queries (14 in every third);
// 4,000 queries each.
func histogramTarget(t *testing.T, server string) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	perSecond := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:                        "lab_queries_per_second",
		Help:                        "Queries in each second.",
		Buckets:                     prometheus.ExponentialBuckets(1, math.Sqrt2, 35),
		NativeHistogramBucketFactor: 1.05,
	}, []string{"server", "zone"})
	reg.MustRegister(perSecond)
	for second := range 300 {
		herd, even := 0.0, 13.0
		if second%30 == 0 {
			herd = 400
		}
		if second%3 == 0 {
			even = 14
		}
		perSecond.WithLabelValues(server, "herd").Observe(herd)
		perSecond.WithLabelValues(server, "even").Observe(even)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
