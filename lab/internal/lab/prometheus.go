package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
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

// Prometheus is a Prometheus server on loopback that scrapes the targets
// the lab hands it (file service discovery) and evaluates rule files.
type Prometheus struct {
	*Process
	Addr string // host:port of its HTTP API
	sd   string // the folder of its target files
}

// StartPrometheus starts the lab's Prometheus (PrometheusBinary) in dir,
// scraping and evaluating every interval, with the rule files given.
func StartPrometheus(ctx context.Context, dir string, interval time.Duration, rules ...string) (*Prometheus, error) {
	binary, err := PrometheusBinary()
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	p := &Prometheus{Addr: "127.0.0.1:" + port, sd: filepath.Join(dir, "targets")}
	if err := os.MkdirAll(p.sd, 0o755); err != nil {
		return nil, err
	}
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(prometheusConfig(interval, p.sd, rules)), 0o644); err != nil {
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

func prometheusConfig(interval time.Duration, sd string, rules []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\n", interval, interval)
	if len(rules) > 0 {
		b.WriteString("rule_files:\n")
		for _, r := range rules {
			fmt.Fprintf(&b, "- %q\n", r)
		}
	}
	fmt.Fprintf(&b, "scrape_configs:\n- job_name: coredns\n  file_sd_configs:\n  - files: [%q]\n", filepath.Join(sd, "*.json"))
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
	group, err := json.Marshal([]map[string]any{{"targets": targets, "labels": labels}})
	if err != nil {
		return err
	}
	// Written whole, then renamed: Prometheus never reads half a file.
	tmp := filepath.Join(p.sd, "."+name+".tmp")
	if err := os.WriteFile(tmp, group, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(p.sd, name+".json"))
}

// Sample is one series of a query's answer at one instant.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Query evaluates expr at the instant at.
func (p *Prometheus) Query(ctx context.Context, expr string, at time.Time) ([]Sample, error) {
	var result []struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	}
	q := url.Values{"query": {expr}, "time": {timestamp(at)}}
	if err := p.api(ctx, "query", q, &result); err != nil {
		return nil, err
	}
	out := make([]Sample, 0, len(result))
	for _, r := range result {
		v, err := number(r.Value[1])
		if err != nil {
			return nil, err
		}
		out = append(out, Sample{Labels: r.Metric, Value: v})
	}
	return out, nil
}

// Series is one series of a range query: a value every step.
type Series struct {
	Labels map[string]string
	Times  []time.Time
	Values []float64
}

// QueryRange evaluates expr every step from start to end.
func (p *Prometheus) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]Series, error) {
	var result []struct {
		Metric map[string]string `json:"metric"`
		Values [][2]any          `json:"values"`
	}
	q := url.Values{"query": {expr}, "start": {timestamp(start)}, "end": {timestamp(end)}, "step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}}
	if err := p.api(ctx, "query_range", q, &result); err != nil {
		return nil, err
	}
	out := make([]Series, 0, len(result))
	for _, r := range result {
		s := Series{Labels: r.Metric}
		for _, pair := range r.Values {
			at, ok := pair[0].(float64)
			v, err := number(pair[1])
			if !ok || err != nil {
				return nil, fmt.Errorf("query_range %s: a sample %v", expr, pair)
			}
			s.Times = append(s.Times, time.Unix(0, int64(at*1e9)))
			s.Values = append(s.Values, v)
		}
		out = append(out, s)
	}
	return out, nil
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
