package deploy

// deploy/helm/values.yaml for the official CoreDNS chart (coredns/helm): the
// keys it sets, decoded strictly against the chart's shape for them, and the
// Corefile the chart's templates/configmap.yaml makes of servers[].

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

type helmValues struct {
	Image struct {
		Repository string `json:"repository"`
		Tag        string `json:"tag"`
	} `json:"image"`
	Servers []struct {
		Zones []struct {
			Zone   string `json:"zone"`
			Scheme string `json:"scheme"`
			UseTCP bool   `json:"use_tcp"`
		} `json:"zones"`
		Port    int `json:"port"`
		Plugins []struct {
			Name        string `json:"name"`
			Parameters  scalar `json:"parameters"`
			ConfigBlock string `json:"configBlock"`
		} `json:"plugins"`
	} `json:"servers"`
}

// scalar is a value the chart prints as it is: a string or a number (cache's 30).
type scalar string

func (s *scalar) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case string:
		*s = scalar(v)
	case float64:
		*s = scalar(fmt.Sprint(v))
	default:
		return fmt.Errorf("parameters %s: want a string or a number", b)
	}
	return nil
}

func readHelmValues(t *testing.T) helmValues {
	t.Helper()
	var v helmValues
	readYAML(t, "helm/values.yaml", &v, yaml.UnmarshalStrict)
	return v
}

// helmCorefile renders servers[] the way the chart's configmap template does:
// per server its zones (scheme + zone, "." by default) and :port, then each
// plugin's name, parameters and configBlock.
func helmCorefile(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, s := range readHelmValues(t).Servers {
		var keys []string
		for _, z := range s.Zones {
			keys = append(keys, z.Scheme+orDefault(z.Zone, "."))
		}
		b.WriteString(orDefault(strings.Join(keys, " "), "."))
		if s.Port != 0 {
			fmt.Fprintf(&b, ":%d", s.Port)
		}
		b.WriteString(" {\n")
		for _, p := range s.Plugins {
			b.WriteString("    " + strings.TrimSpace(p.Name+" "+string(p.Parameters)))
			if p.ConfigBlock != "" {
				b.WriteString(" {\n        " + strings.ReplaceAll(p.ConfigBlock, "\n", "\n        ") + "\n    }")
			}
			b.WriteString("\n")
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// orDefault is s, or def when s is empty (the template's default).
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func TestHelmValues(t *testing.T) {
	v := readHelmValues(t)
	if v.Image.Repository+":"+v.Image.Tag != "registry.example.com/minttl/coredns:v1.13.1-minttl" {
		t.Errorf("image %s:%s", v.Image.Repository, v.Image.Tag)
	}
	corefile := helmCorefile(t)
	if !strings.Contains(corefile, "    minttl linkerd.svc.cluster.local {\n        floor 31s\n") || !strings.Contains(corefile, ".:53 {\n") {
		t.Errorf("the chart would render:\n%s", corefile)
	}
}
