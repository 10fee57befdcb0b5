package deploy

// The Prometheus rules in deploy/monitoring, checked and unit-tested by promtool;
// every alert must have a test where it fires and one where it stays quiet.

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	rulesFile     = "monitoring/minttl-rules.yaml"
	rulesTestFile = "monitoring/minttl-rules.test.yaml"
)

// promtoolEnv names the promtool the tests run; make sets it to the one it
// built (make prometheus, lab/prometheus), the release operators run.
const promtoolEnv = "MINTTL_PROMTOOL"

// promtoolPath is $MINTTL_PROMTOOL, or the checkout's .bin/prometheus/promtool;
// it never falls back to another promtool.
func promtoolPath(t *testing.T) string {
	t.Helper()
	path := os.Getenv(promtoolEnv)
	if path == "" {
		path = filepath.Join("..", ".bin", "prometheus", "promtool")
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("promtool is missing (make prometheus builds it; or set %s): %v", promtoolEnv, err)
	}
	return path
}

func promtool(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(promtoolPath(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %v: %v\n%s", args, err, out)
	}
	t.Logf("promtool %v:\n%s", args, out)
}

func TestRules(t *testing.T) {
	promtool(t, "check", "rules", rulesFile)
	promtool(t, "test", "rules", rulesTestFile)
}

func TestEveryAlertFiresAndStaysQuiet(t *testing.T) {
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
			} `json:"rules"`
		} `json:"groups"`
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	readYAML(t, rulesFile, &rules, yaml.Unmarshal)
	readYAML(t, rulesTestFile, &tests, yaml.Unmarshal)
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, test := range tests.Tests {
		for _, a := range test.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	alerts := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			if !fires[r.Alert] || !quiet[r.Alert] {
				t.Errorf("alert %s: a test where it fires %v, one where it stays quiet %v; want both", r.Alert, fires[r.Alert], quiet[r.Alert])
			}
		}
	}
	if alerts == 0 {
		t.Errorf("no alerts in %s", rulesFile)
	}
}

// readYAML decodes the YAML file at path into v with decode
// (yaml.UnmarshalStrict where an unknown key must fail).
func readYAML(t *testing.T, path string, v any, decode func([]byte, any, ...yaml.JSONOpt) error) {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := decode(text, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
