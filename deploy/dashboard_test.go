package deploy

// The Grafana dashboard in deploy/monitoring, checked offline: its JSON decodes
// strictly into the dashboard fields it uses, every query parses (promtool), and
// every metric it and the rules name is one CoreDNS or minttl exports.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const dashboardFile = "monitoring/minttl-dashboard.json"

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashboard struct {
	UID           string   `json:"uid"`
	Title         string   `json:"title"`
	Tags          []string `json:"tags"`
	Timezone      string   `json:"timezone"`
	SchemaVersion int      `json:"schemaVersion"`
	Version       int      `json:"version"`
	Editable      bool     `json:"editable"`
	Refresh       string   `json:"refresh"`
	Time          struct {
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"time"`
	Templating struct {
		List []struct {
			Name    string   `json:"name"`
			Label   string   `json:"label"`
			Type    string   `json:"type"`
			Query   string   `json:"query"`
			Current struct{} `json:"current"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID          int        `json:"id"`
		Type        string     `json:"type"`
		Title       string     `json:"title"`
		Description string     `json:"description"`
		Datasource  datasource `json:"datasource"`
		GridPos     struct {
			H, W, X, Y int
		} `json:"gridPos"`
		FieldConfig struct {
			Defaults struct {
				Unit string `json:"unit"`
			} `json:"defaults"`
			Overrides []struct{} `json:"overrides"`
		} `json:"fieldConfig"`
		Options struct {
			Calculate *bool `json:"calculate"` // heatmap: the buckets come from Prometheus
			Legend    struct {
				DisplayMode string `json:"displayMode"`
				Placement   string `json:"placement"`
				ShowLegend  bool   `json:"showLegend"`
			} `json:"legend"`
			Tooltip struct {
				Mode string `json:"mode"`
				Sort string `json:"sort"`
			} `json:"tooltip"`
		} `json:"options"`
		Targets []struct {
			RefID        string     `json:"refId"`
			Datasource   datasource `json:"datasource"`
			Expr         string     `json:"expr"`
			LegendFormat string     `json:"legendFormat"`
			Format       string     `json:"format"`
		} `json:"targets"`
	} `json:"panels"`
}

func TestDashboard(t *testing.T) {
	text, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 || len(d.Templating.List) != 1 || d.Templating.List[0].Name != "datasource" {
		t.Fatalf("%s: uid %q, title %q, %d panels, templating %+v", dashboardFile, d.UID, d.Title, len(d.Panels), d.Templating.List)
	}
	// Every query as a recording rule, for promtool to parse.
	var rules strings.Builder
	rules.WriteString("groups:\n- name: dashboard\n  rules:\n")
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] || p.Title == "" || len(p.Targets) == 0 || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %d %q: duplicate id, no title, no targets, or a data source other than ${datasource}", p.ID, p.Title)
		}
		ids[p.ID] = true
		for _, target := range p.Targets {
			if target.Datasource != p.Datasource || target.Expr == "" {
				t.Errorf("panel %q target %s: data source %v, expr %q", p.Title, target.RefID, target.Datasource, target.Expr)
			}
			expr := strings.ReplaceAll(target.Expr, "$__rate_interval", "5m")
			fmt.Fprintf(&rules, "  - record: dashboard:panel%d_%s\n    expr: %q\n", p.ID, target.RefID, expr)
		}
	}
	// The recording rules a panel reads are minttl-rules.yaml's.
	defined, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`\b\w+:coredns_\w+:\w+`).FindAllString(string(text), -1) {
		if !strings.Contains(string(defined), "record: "+name+"\n") {
			t.Errorf("the dashboard reads %s, which %s does not record", name, rulesFile)
		}
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(path, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	promtool(t, "check", "rules", path)
}

// TestMetricNames: the dashboard and the rules name only metrics that exist:
// minttl's (metrics.go, a histogram with its _bucket, _sum and _count) and
// CoreDNS's requests and responses.
func TestMetricNames(t *testing.T) {
	source, err := os.ReadFile(filepath.Join("..", "metrics.go"))
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{"coredns_dns_responses_total": true, "coredns_dns_requests_total": true}
	for _, m := range regexp.MustCompile(`Name:\s+"(\w+)"`).FindAllStringSubmatch(string(source), -1) {
		name := "coredns_minttl_" + m[1]
		exported[name] = true
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			exported[name+suffix] = !strings.HasSuffix(name, "_total")
		}
	}
	if len(exported) < 5 {
		t.Fatalf("found only %v in metrics.go", exported)
	}
	// A metric's name, not a recording rule's (level:metric:operations).
	named := regexp.MustCompile(`(?:^|[^:\w])(coredns_\w+)\b(?:[^:]|$)`)
	for _, file := range []string{dashboardFile, rulesFile, rulesTestFile} {
		text, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range named.FindAllStringSubmatch(string(text), -1) {
			if !exported[m[1]] {
				t.Errorf("%s names %s, which neither minttl nor CoreDNS exports", file, m[1])
			}
		}
	}
}
