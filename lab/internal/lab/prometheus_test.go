package lab

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
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
	p, err := StartPrometheus(context.Background(), dir, time.Second, rules)
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

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
